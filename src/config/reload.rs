//! What a reload (SIGHUP) may change: everything but the keys listed here, which keep their
//! running values until a restart.

use super::model::Config;

impl Config {
    /// Gives the keys that take effect only on restart their `running` values again, and
    /// names the ones that had changed.
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! keep {
            ($($field:ident).+, $name:literal) => {
                if self.$($field).+ != running.$($field).+ {
                    changed.push($name);
                    self.$($field).+ = running.$($field).+.clone();
                }
            };
        }
        keep!(milter.listen, "milter.listen");
        keep!(milter.socket_mode, "milter.socket_mode");
        keep!(milter.socket_owner, "milter.socket_owner");
        keep!(milter.socket_group, "milter.socket_group");
        keep!(milter.user, "milter.user");
        keep!(milter.max_connections, "milter.max_connections");
        keep!(milter.shutdown_timeout, "milter.shutdown_timeout");
        keep!(log_level, "log.level");
        keep!(log_format, "log.format");
        keep!(log_syslog, "log.syslog");
        keep!(metrics_listen, "metrics.listen");
        if let (Some(new), Some(old)) = (&mut self.hub, &running.hub)
            && (new.spool != old.spool || new.spool_max != old.spool_max)
        {
            changed.push("hub.spool");
            new.spool = old.spool.clone();
            new.spool_max = old.spool_max;
        }
        changed
    }
}
