//! The store in Redis, for hubs that outgrow one machine: several hub replicas share one
//! Redis server or one Redis Cluster.
//!
//! **Layout.** Every name carries a hash tag `{rmNN}`, `NN` one of [`SHARDS`] shards chosen by
//! a hash of the reputation key (or of the event id), so that Redis Cluster keeps a shard in
//! one slot and a batch touches at most `SHARDS` slots, however many keys it has:
//!
//! | name                    | type   | holds                                              |
//! |-------------------------|--------|----------------------------------------------------|
//! | `rm:{rmNN}:r:KEY`       | hash   | `g:GATEWAY` = "spam ham at"                        |
//! | `rm:{rmNN}:a:KEY`       | string | present while KEY is on the admin allowlist        |
//! | `rm:{rmNN}:i:KIND`      | set    | the keys of that kind with a record (exports)      |
//! | `rm:{rmNN}:e:EVENT`     | string | event applied (kept `hub.event_retention`)         |
//! | `rm:{rmNN}:g:EVENT`     | string | event's updates to this shard applied ([`GROUP_MARK_TTL`]) |
//! | `rm:{rmNN}:events`, `:keys`, `:allowed` | counters | for `/v1/stats`                   |
//!
//! **Ingest** of a batch: (1) the event marks say which events are new; (2) one Lua script per
//! shard applies, for each new event, its updates to that shard's keys, unless the event's
//! group mark there says it already did; (3) one script per shard sets the event marks and
//! counts the events that were new. Each script runs in one slot, atomically. A replica that
//! dies between the steps leaves group marks behind, so the gateway's retry (it retries until
//! acknowledged) applies each update exactly once; only a retry more than
//! [`GROUP_MARK_TTL`] after such a crash could apply part of an event twice. Evidence decays
//! in the script exactly as in `model::Evidence` (the same formula, in Lua).
//!
//! **Pruning.** Event marks expire by themselves. Records are pruned in steps that walk the
//! kind indexes with `SSCAN`; a script per chunk drops the gateways whose evidence decayed
//! below `FORGET_BELOW`, and a record left with none, its index entry and its count.

use std::sync::Mutex;
use std::time::Duration;

use redis::{FromRedisValue, RedisResult};

use super::{Counts, Ingest, LearnedCounts, Pruned, Store, StoreError, UpdatesFn};
use crate::hub::model::{Evidence, FORGET_BELOW, KeyRecord, Model};
use crate::reputation::keys::KINDS;

/// Shards (hash tags, so Cluster slots) the data is spread over.
pub const SHARDS: u32 = 32;

/// How long an applied event's id is kept unless configured (`hub.event_retention`): a
/// gateway resending it within this time has it counted once.
pub const EVENT_MARK_TTL: u64 = 30 * 24 * 3600;

/// Index entries one `SSCAN` asks for; scans one pruning step makes at most.
const SCAN_COUNT: usize = 500;
const PRUNE_SCANS: usize = 20;

/// How long a shard remembers applying an event's updates, for retries after a replica died
/// midway through a batch.
pub const GROUP_MARK_TTL: u64 = 3600;

/// Idle connections kept per hub replica.
const POOL: usize = 32;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Applies the updates of new events to one shard. See the module comment for KEYS and ARGV.
const APPLY: &str = r#"
local now = tonumber(ARGV[1])
local hl = math.max(tonumber(ARGV[2]), 1)
local ttl = ARGV[3]
local gw = 'g:' .. ARGV[4]
local n = tonumber(ARGV[5])
local a = 6
local created = 0
local function decay(at)
  local age = now - at
  if age < 0 then age = 0 end
  return 2 ^ (-age / hl)
end
for e = 1, n do
  local mark = KEYS[tonumber(ARGV[a])]
  local m = tonumber(ARGV[a + 1])
  a = a + 2
  local fresh = redis.call('SET', mark, '1', 'NX', 'EX', ttl)
  for u = 1, m do
    local rec = KEYS[tonumber(ARGV[a])]
    local idx = KEYS[tonumber(ARGV[a + 1])]
    local s, h = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local name = ARGV[a + 4]
    a = a + 5
    if fresh then
      if redis.call('EXISTS', rec) == 0 and redis.call('SADD', idx, name) == 1 then
        created = created + 1
      end
      if s > 0 or h > 0 then
        local os, oh, oa = 0, 0, now
        local v = redis.call('HGET', rec, gw)
        if v then
          local it = string.gmatch(v, '%S+')
          os, oh, oa = tonumber(it()), tonumber(it()), tonumber(it())
        end
        local f = decay(oa)
        redis.call('HSET', rec, gw,
          string.format('%.17g %.17g %d', os * f + s, oh * f + h, math.max(now, oa)))
      end
    end
  end
end
if created > 0 then redis.call('INCRBY', KEYS[1], created) end
return created
"#;

/// Marks events applied in one shard; answers 1 for each that was new. KEYS: the counter, then
/// the marks; ARGV: the marks' lifetime.
const MARK: &str = r#"
local out = {}
local new = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    out[i - 1] = 1
    new = new + 1
  else
    out[i - 1] = 0
  end
end
if new > 0 then redis.call('INCRBY', KEYS[1], new) end
return out
"#;

/// Forgets evidence decayed below ARGV[3] on records of one shard's index. KEYS: the index,
/// the shard's key counter, then the records; ARGV: now, half-life, the threshold, then the
/// records' key names. Answers the records removed.
const PRUNE: &str = r#"
local now = tonumber(ARGV[1])
local hl = math.max(tonumber(ARGV[2]), 1)
local forget = tonumber(ARGV[3])
local removed = 0
for i = 3, #KEYS do
  local rec = KEYS[i]
  local fields = redis.call('HGETALL', rec)
  local left = 0
  for j = 1, #fields, 2 do
    local f, v = fields[j], fields[j + 1]
    if string.sub(f, 1, 2) == 'g:' then
      local it = string.gmatch(v, '%S+')
      local s, h, at = tonumber(it()), tonumber(it()), tonumber(it())
      local age = now - at
      if age < 0 then age = 0 end
      local d = 2 ^ (-age / hl)
      if s * d < forget and h * d < forget then
        redis.call('HDEL', rec, f)
      else
        left = left + 1
      end
    else
      left = left + 1
    end
  end
  if left == 0 then
    redis.call('DEL', rec)
    if redis.call('SREM', KEYS[1], ARGV[i + 1]) == 1 then removed = removed + 1 end
  end
end
if removed > 0 then redis.call('DECRBY', KEYS[2], removed) end
return removed
"#;

/// Adds a reported message's features to a gateway's learned counts (new ones only while the
/// hash has fewer than ARGV[4] fields). KEYS: the gateway's hash, the set of gateways; ARGV:
/// the gateway, "s" or "h", the weight, the most fields, then the features (hex).
const TRAIN: &str = r#"
local side, w = ARGV[2], ARGV[3]
local full = redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4])
for i = 5, #ARGV do
  local field = side .. ':' .. ARGV[i]
  if not full or redis.call('HEXISTS', KEYS[1], field) == 1 then
    redis.call('HINCRBYFLOAT', KEYS[1], field, w)
  end
end
redis.call('HINCRBYFLOAT', KEYS[1], 'n' .. side, w)
redis.call('SADD', KEYS[2], ARGV[1])
return 0
"#;

/// Drops learned counts under ARGV[1] from a gateway's hash (KEYS[1]); ARGV[2..]: the fields
/// to look at. Answers how many went.
const PRUNE_LEARNED: &str = r#"
local floor, gone = tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(ARGV[i], 2, 2) == ':' and tonumber(v) < floor then
    redis.call('HDEL', KEYS[1], ARGV[i])
    gone = gone + 1
  end
end
return gone
"#;

/// Puts a key on the allowlist (ARGV[1] = 1) or takes it off, keeping the count.
const ALLOW: &str = r#"
if ARGV[1] == '1' then
  if redis.call('SET', KEYS[1], '1', 'NX') then redis.call('INCR', KEYS[2]) end
elseif redis.call('DEL', KEYS[1]) == 1 then
  redis.call('DECR', KEYS[2])
end
return 0
"#;

enum Connector {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

enum Conn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Conn {
    /// Sends `cmds` in one round trip (per node, on a cluster) and reads their answers.
    fn pipe<T: FromRedisValue>(&mut self, cmds: Vec<redis::Cmd>) -> RedisResult<T> {
        match self {
            Conn::Single(c) => {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd);
                }
                p.query(c)
            }
            Conn::Cluster(c) => {
                let mut p = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    p.add_command(cmd);
                }
                p.query(c)
            }
        }
    }
}

pub struct Redis {
    connector: Connector,
    idle: Mutex<Vec<Conn>>,
    /// Seconds an event mark lives.
    event_ttl: u64,
    /// Where pruning stopped: shard, kind (index into `KINDS`), SSCAN cursor; read from
    /// [`PRUNE_AT`] on the first step, so that a pass goes on across restarts.
    prune_at: Mutex<Option<(u32, usize, u64)>>,
    /// Where it is, for errors (without credentials).
    name: String,
}

/// The shard of a key or event id (FNV-1a, fixed across versions and replicas).
fn shard(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

fn tag(shard: u32) -> String {
    format!("rm:{{rm{shard:02}}}")
}

fn record_name(key: &str) -> String {
    format!("{}:r:{key}", tag(shard(key)))
}

/// Where pruning stopped: "SHARD KIND CURSOR".
const PRUNE_AT: &str = "rm:{rmlearn}:prune";

/// The gateways with learned counts; each gateway's counts, one hash (one slot: a report's
/// features go in atomically).
const LEARNED_GATEWAYS: &str = "rm:{rmlearn}:lg";

fn learned_name(gateway: &str) -> String {
    format!("rm:{{rmlearn}}:l:{gateway}")
}

fn kind_of(key: &str) -> &str {
    key.split_once(':').map_or(key, |(k, _)| k)
}

impl Redis {
    /// Connects to one server (`cluster` false, one URL) or a cluster (its seed nodes), and
    /// checks that it answers.
    pub fn open(urls: &[String], cluster: bool) -> Result<Redis, StoreError> {
        let bad = |e: redis::RedisError| StoreError(format!("redis: {e}"));
        let connector = if cluster {
            Connector::Cluster(
                redis::cluster::ClusterClient::builder(urls.to_vec())
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .build()
                    .map_err(bad)?,
            )
        } else {
            let url = urls
                .first()
                .ok_or_else(|| StoreError("redis: no URL".into()))?;
            Connector::Single(redis::Client::open(url.as_str()).map_err(bad)?)
        };
        let name = urls
            .iter()
            .map(|u| {
                // Credentials stay out of messages.
                u.rsplit_once('@')
                    .map_or(u.clone(), |(_, host)| format!("redis://{host}"))
            })
            .collect::<Vec<_>>()
            .join(",");
        let store = Redis {
            connector,
            idle: Mutex::new(Vec::new()),
            event_ttl: EVENT_MARK_TTL,
            prune_at: Mutex::new(None),
            name,
        };
        // It answers, and holds what this layout expects (or nothing yet).
        store.counts()?;
        Ok(store)
    }

    /// One `SSCAN` of a set from `cursor`: the next cursor (0: done) and some members.
    fn sscan(&self, set: &str, cursor: u64) -> Result<(u64, Vec<String>), StoreError> {
        self.pipe::<Vec<(u64, Vec<String>)>>(vec![
            redis::cmd("SSCAN")
                .arg(set)
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .to_owned(),
        ])?
        .pop()
        .ok_or_else(|| StoreError("redis: SSCAN gave no answer".into()))
    }

    /// Event marks live `seconds` (`hub.event_retention`).
    pub fn with_event_retention(mut self, seconds: u64) -> Redis {
        self.event_ttl = seconds.max(1);
        self
    }

    fn connect(&self) -> RedisResult<Conn> {
        Ok(match &self.connector {
            Connector::Single(client) => {
                let c = client.get_connection_with_timeout(TIMEOUT)?;
                c.set_read_timeout(Some(TIMEOUT))?;
                c.set_write_timeout(Some(TIMEOUT))?;
                Conn::Single(c)
            }
            Connector::Cluster(client) => Conn::Cluster(Box::new(client.get_connection()?)),
        })
    }

    /// Runs `cmds` as one pipeline on a pooled connection; a connection that failed is not
    /// reused.
    fn pipe<T: FromRedisValue>(&self, cmds: Vec<redis::Cmd>) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self
                .connect()
                .map_err(|e| StoreError(format!("redis {}: {e}", self.name)))?,
        };
        match conn.pipe(cmds) {
            Ok(v) => {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() < POOL {
                    idle.push(conn);
                }
                Ok(v)
            }
            Err(e) => Err(StoreError(format!("redis {}: {e}", self.name))),
        }
    }
}

fn eval(script: &str, keys: &[String], args: &[String]) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(script).arg(keys.len()).arg(keys).arg(args);
    c
}

/// One shard's part of a batch, as APPLY takes it.
#[derive(Default)]
struct ShardBatch {
    keys: Vec<String>,
    args: Vec<String>,
    events: usize,
}

impl ShardBatch {
    fn key(&mut self, name: String) -> usize {
        if let Some(i) = self.keys.iter().position(|k| *k == name) {
            return i + 1;
        }
        self.keys.push(name);
        self.keys.len()
    }
}

fn parse_record(key: &str, fields: Vec<(String, String)>) -> Result<Option<KeyRecord>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let bad = || {
        StoreError(format!(
            "redis: the record of {key} is not in the expected form"
        ))
    };
    let mut rec = KeyRecord::default();
    for (field, value) in fields {
        let nums: Vec<f64> = value
            .split_whitespace()
            .map(|n| n.parse::<f64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        if let Some(gw) = field.strip_prefix("g:") {
            let [spam, ham, at] = nums[..] else {
                return Err(bad());
            };
            rec.set(
                gw,
                Evidence {
                    spam,
                    ham,
                    at: at as u64,
                },
            );
        }
    }
    Ok(Some(rec))
}

impl Store for Redis {
    fn ingest(
        &self,
        gateway: &str,
        events: Vec<Ingest>,
        updates: UpdatesFn,
        now: u64,
        model: &Model,
    ) -> Result<Vec<bool>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let events = &events[..];
        let event_mark = |id: &str| format!("{}:e:{id}", tag(shard(id)));
        // 1. Which events were applied before.
        let known: Vec<bool> = self.pipe(
            events
                .iter()
                .map(|e| redis::Cmd::exists(event_mark(&e.event_id)))
                .collect(),
        )?;
        // 2. The new events' updates, from the records as they are (read once), one script
        // per shard.
        let mut wanted: Vec<String> = events
            .iter()
            .zip(&known)
            .filter(|(_, k)| !**k)
            .flat_map(|(e, _)| e.keys.iter().cloned())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let records: std::collections::HashMap<String, KeyRecord> = wanted
            .iter()
            .cloned()
            .zip(self.records(&wanted)?)
            .filter_map(|(k, r)| r.map(|r| (k, r)))
            .collect();
        // KEYS[1] of each script is its shard's key counter.
        let mut shards: Vec<ShardBatch> = (0..SHARDS)
            .map(|s| ShardBatch {
                keys: vec![format!("{}:keys", tag(s))],
                ..ShardBatch::default()
            })
            .collect();
        for (i, e) in events.iter().enumerate().filter(|(i, _)| !known[*i]) {
            let before: Vec<Option<&KeyRecord>> = e.keys.iter().map(|k| records.get(k)).collect();
            let mut per_shard: Vec<Vec<String>> = vec![Vec::new(); SHARDS as usize];
            for (key, u) in e.keys.iter().zip(updates(i, &before)) {
                if !u.is_some() {
                    continue;
                }
                let s = shard(key) as usize;
                let b = &mut shards[s];
                let rec = b.key(record_name(key));
                let idx = b.key(format!("{}:i:{}", tag(s as u32), kind_of(key)));
                per_shard[s].extend([
                    rec.to_string(),
                    idx.to_string(),
                    u.spam.to_string(),
                    u.ham.to_string(),
                    key.clone(),
                ]);
            }
            for (s, args) in per_shard.into_iter().enumerate() {
                if args.is_empty() {
                    continue;
                }
                let b = &mut shards[s];
                let mark = b.key(format!("{}:g:{}", tag(s as u32), e.event_id));
                b.args.push(mark.to_string());
                b.args.push((args.len() / 5).to_string());
                b.args.extend(args);
                b.events += 1;
            }
        }
        let scripts: Vec<redis::Cmd> = shards
            .into_iter()
            .filter(|b| b.events > 0)
            .map(|b| {
                let mut args = vec![
                    now.to_string(),
                    model.half_life.to_string(),
                    GROUP_MARK_TTL.to_string(),
                    gateway.to_string(),
                    b.events.to_string(),
                ];
                args.extend(b.args);
                eval(APPLY, &b.keys, &args)
            })
            .collect();
        if !scripts.is_empty() {
            self.pipe::<Vec<i64>>(scripts)?;
        }
        // 3. Mark the events and count the new ones.
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); SHARDS as usize];
        for (i, e) in events.iter().enumerate() {
            if !known[i] {
                by_shard[shard(&e.event_id) as usize].push(i);
            }
        }
        let mut out = vec![false; events.len()];
        let groups: Vec<(u32, Vec<usize>)> = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(s, v)| (s as u32, v))
            .collect();
        if groups.is_empty() {
            return Ok(out);
        }
        let answers: Vec<Vec<i64>> = self.pipe(
            groups
                .iter()
                .map(|(s, idx)| {
                    let mut keys = vec![format!("{}:events", tag(*s))];
                    keys.extend(idx.iter().map(|&i| event_mark(&events[i].event_id)));
                    eval(MARK, &keys, &[self.event_ttl.to_string()])
                })
                .collect(),
        )?;
        for ((_, idx), answer) in groups.iter().zip(answers) {
            for (&i, new) in idx.iter().zip(answer) {
                out[i] = new == 1;
            }
        }
        Ok(out)
    }

    fn records(&self, keys: &[String]) -> Result<Vec<Option<KeyRecord>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Vec<(String, String)>> = self.pipe(
            keys.iter()
                .map(|k| redis::Cmd::hgetall(record_name(k)))
                .collect(),
        )?;
        keys.iter()
            .zip(raw)
            .map(|(k, fields)| parse_record(k, fields))
            .collect()
    }

    fn set_allowed(&self, key: &str, allowed: bool) -> Result<(), StoreError> {
        let t = tag(shard(key));
        let keys = [format!("{t}:a:{key}"), format!("{t}:allowed")];
        let arg = if allowed { "1" } else { "0" };
        self.pipe::<Vec<i64>>(vec![eval(ALLOW, &keys, &[arg.to_string()])])?;
        Ok(())
    }

    fn allowed(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.pipe(
            keys.iter()
                .map(|k| redis::Cmd::exists(format!("{}:a:{k}", tag(shard(k)))))
                .collect(),
        )
    }

    fn train(
        &self,
        gateway: &str,
        lessons: &[super::Lesson],
        weight: f64,
        max_features: usize,
    ) -> Result<(), StoreError> {
        let keys = [learned_name(gateway), LEARNED_GATEWAYS.to_string()];
        let scripts: Vec<redis::Cmd> = lessons
            .iter()
            .map(|(spam, features)| {
                let mut args = vec![
                    gateway.to_string(),
                    if *spam { "s" } else { "h" }.to_string(),
                    format!("{weight:e}"),
                    // A feature is up to two fields, and the totals two more.
                    (2 * max_features + 2).to_string(),
                ];
                args.extend(features.iter().map(|f| format!("{f:x}")));
                eval(TRAIN, &keys, &args)
            })
            .collect();
        if !scripts.is_empty() {
            self.pipe::<Vec<i64>>(scripts)?;
        }
        Ok(())
    }

    fn learned(&self) -> Result<Vec<LearnedCounts>, StoreError> {
        let gateways: Vec<Vec<String>> = self.pipe(vec![redis::Cmd::smembers(LEARNED_GATEWAYS)])?;
        let mut gateways: Vec<String> = gateways.into_iter().flatten().collect();
        gateways.sort();
        let mut out = Vec::with_capacity(gateways.len());
        for g in gateways {
            let fields: Vec<Vec<(String, f64)>> =
                self.pipe(vec![redis::Cmd::hgetall(learned_name(&g))])?;
            let mut c = LearnedCounts {
                gateway: g,
                ..LearnedCounts::default()
            };
            let mut per: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
            for (field, v) in fields.into_iter().flatten() {
                match field.as_str() {
                    "ns" => c.spam = v,
                    "nh" => c.ham = v,
                    _ => {
                        let Some((side, hex)) = field.split_once(':') else {
                            continue;
                        };
                        let Ok(f) = u64::from_str_radix(hex, 16) else {
                            continue;
                        };
                        let e = per.entry(f).or_default();
                        if side == "s" {
                            e.0 = v;
                        } else {
                            e.1 = v;
                        }
                    }
                }
            }
            c.features = per.into_iter().map(|(f, (s, h))| (f, s, h)).collect();
            out.push(c);
        }
        Ok(out)
    }

    /// Walks the per-kind indexes with `SSCAN` (so `prefix` should name a kind, as `ip:`),
    /// reading records a chunk at a time.
    fn each_with_prefix(
        &self,
        prefix: &str,
        visit: &mut dyn FnMut(&str, &KeyRecord),
    ) -> Result<(), StoreError> {
        let kind = kind_of(prefix);
        for s in 0..SHARDS {
            let mut cursor = 0u64;
            loop {
                let (next, names) = self.sscan(&format!("{}:i:{kind}", tag(s)), cursor)?;
                let names: Vec<String> = names
                    .into_iter()
                    .filter(|k| k.starts_with(prefix))
                    .collect();
                for (k, rec) in names.iter().zip(self.records(&names)?) {
                    if let Some(rec) = rec {
                        visit(k, &rec);
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(())
    }

    fn prune(
        &self,
        now: u64,
        half_life: u64,
        _event_retention: u64,
        learn_floor: f64,
    ) -> Result<Pruned, StoreError> {
        let mut guard = self.prune_at.lock().unwrap_or_else(|p| p.into_inner());
        let at = match &mut *guard {
            Some(at) => at,
            None => {
                let saved: Vec<Option<String>> = self.pipe(vec![redis::Cmd::get(PRUNE_AT)])?;
                let parsed = saved.into_iter().flatten().next().and_then(|v| {
                    let mut it = v.split(' ').map(str::parse::<u64>);
                    let (s, k, c) = (it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?);
                    (s <= u64::from(SHARDS)).then_some((s as u32, k as usize, c))
                });
                guard.insert(parsed.unwrap_or((0, 0, 0)))
            }
        };
        let mut out = Pruned::default();
        for _ in 0..PRUNE_SCANS {
            let (shard, kind, cursor) = *at;
            if shard == SHARDS {
                // Past the records: the learned counts, gateway by gateway (`kind` its
                // place in name order).
                let found: Vec<Vec<String>> =
                    self.pipe(vec![redis::Cmd::smembers(LEARNED_GATEWAYS)])?;
                let mut gateways: Vec<String> = found.into_iter().flatten().collect();
                gateways.sort();
                let Some(g) = gateways.get(kind) else {
                    out.pass_done = true;
                    *at = (0, 0, 0);
                    break;
                };
                let hash = learned_name(g);
                let (next, fields): (u64, Vec<String>) = self
                    .pipe::<Vec<(u64, Vec<String>)>>(vec![
                        redis::cmd("HSCAN")
                            .arg(&hash)
                            .arg(cursor)
                            .arg("COUNT")
                            .arg(SCAN_COUNT)
                            .to_owned(),
                    ])?
                    .pop()
                    .ok_or_else(|| StoreError("redis: HSCAN gave no answer".into()))?;
                // HSCAN answers field, value, field, value...
                let mut args = vec![format!("{learn_floor:e}")];
                args.extend(fields.into_iter().step_by(2));
                if args.len() > 1 {
                    let gone: Vec<i64> = self.pipe(vec![eval(PRUNE_LEARNED, &[hash], &args)])?;
                    out.features += gone.iter().sum::<i64>().max(0) as u64;
                }
                *at = if next != 0 {
                    (shard, kind, next)
                } else {
                    (shard, kind + 1, 0)
                };
                continue;
            }
            let t = tag(shard);
            let index = format!("{t}:i:{}", KINDS[kind]);
            let (next, names) = self.sscan(&index, cursor)?;
            if !names.is_empty() {
                let mut keys = vec![index, format!("{t}:keys")];
                keys.extend(names.iter().map(|n| record_name(n)));
                let mut args = vec![
                    now.to_string(),
                    half_life.to_string(),
                    FORGET_BELOW.to_string(),
                ];
                args.extend(names);
                let removed: Vec<i64> = self.pipe(vec![eval(PRUNE, &keys, &args)])?;
                out.keys += removed.iter().sum::<i64>().max(0) as u64;
            }
            *at = if next != 0 {
                (shard, kind, next)
            } else if kind + 1 < KINDS.len() {
                (shard, kind + 1, 0)
            } else {
                // After the last shard, SHARDS: the learned counts.
                (shard + 1, 0, 0)
            };
            if out.pass_done {
                break;
            }
        }
        let (s, k, c) = *at;
        self.pipe::<()>(vec![redis::Cmd::set(PRUNE_AT, format!("{s} {k} {c}"))])?;
        Ok(out)
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let values: Vec<Option<i64>> = self.pipe(
            (0..SHARDS)
                .flat_map(|s| {
                    ["events", "keys", "allowed"]
                        .map(|what| redis::Cmd::get(format!("{}:{what}", tag(s))))
                })
                .collect(),
        )?;
        let mut sums = [0i64; 3];
        for (i, v) in values.into_iter().enumerate() {
            sums[i % 3] += v.unwrap_or(0);
        }
        Ok(Counts {
            events: sums[0].max(0) as u64,
            keys: sums[1].max(0) as u64,
            allowlisted: sums[2].max(0) as u64,
        })
    }
}
