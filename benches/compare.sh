#!/usr/bin/env bash
# Side by side, in one run (issue 13): the same corpus through
#   - repmilter with the shipped config and rules (plus the two DNS lists below),
#   - repmilter with SpamAssassin's stock rules as well,
#   - rspamd (Debian's 3.4: its proxy worker in milter mode, self-scanning),
#   - spamass-milter with spamd (Debian's; network tests off, `spamd -L`),
#   - for reference, a milter that does nothing (pymilter on libmilter, Debian's
#     python3-milter): it asks the MTA to send nothing but the end of message, and accepts,
#     so its row is what any milter costs before it looks at a message,
# each loaded by `repmilter bench` (16 sessions, one message per connection) after a warm-up
# pass; then smtp-source through a private Postfix with no milter and with each of them.
#
# Equal work where it can be equalised: every system asks the same two DNS lists, served by a
# local rbldnsd (an IP list that lists the load generator's client address 192.0.2.10, a
# domain list for URLs), and nothing else can reach the network: rspamd's resolver is that
# rbldnsd, which refuses every other name at once (rspamd's SPF, DKIM, DMARC, ASN and fuzzy
# lookups then fail fast), rspamd's default DNS lists are replaced by the two, and SpamAssassin
# runs its local tests only. What cannot be equalised: each system's own rules (rspamd and
# SpamAssassin each run their stock set, far larger than repmilter's shipped one), and
# SpamAssassin sees fewer messages (it scans about 30 a second on this machine).
#
# CPU per message is the user+system time of the milter's whole process tree (workers and
# children, reaped ones included) over the measured run, from /proc; peak RSS is the sum of
# the peak resident sizes (VmHWM) of the processes alive at the end.
#
# Needs (Debian): rbldnsd rspamd spamd spamass-milter python3-milter postfix (smtp-source,
# smtp-sink).
# Run as root (Postfix and rspamd want it): `bash benches/compare.sh`. Knobs: MESSAGES
# (default 3000), SA_MESSAGES (400), CONCURRENCY (16), SMTP_MESSAGES (2000), SMTP_SESSIONS (16).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MESSAGES=${MESSAGES:-3000}
SA_MESSAGES=${SA_MESSAGES:-400}
CONCURRENCY=${CONCURRENCY:-16}
WARMUP=${WARMUP:-300}
SMTP_MESSAGES=${SMTP_MESSAGES:-2000}
SMTP_SESSIONS=${SMTP_SESSIONS:-16}

for tool in rbldnsd rspamd spamd spamass-milter postfix smtp-source smtp-sink; do
    if ! command -v "$tool" >/dev/null; then
        echo "compare.sh needs $tool: apt-get install -y rbldnsd rspamd spamd spamass-milter python3-milter postfix" >&2
        exit 2
    fi
done
if ! /usr/bin/python3 -c 'import Milter' 2>/dev/null; then
    echo "compare.sh needs pymilter: apt-get install -y python3-milter" >&2
    exit 2
fi
for port in 5391 11330 11340 11332 11333 11334 7830 7831 11350 2525 2526; do
    if ss -ltun | awk '{print $5}' | grep ":$port\$" >/dev/null; then
        echo "compare.sh: port $port is in use (another run, or rspamd/spamd as a service?)" >&2
        exit 2
    fi
done

cargo build --release --quiet
benches/fetch-corpus.sh >/dev/null
CORPUS=$ROOT/target/corpus/package/data
BIN=$ROOT/target/release/repmilter
WORK=$(mktemp -d /tmp/repmilter-compare.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -d "$WORK/postfix/conf" ] && postfix -c "$WORK/postfix/conf" stop >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "== $*" >&2; }

# A process and its descendants.
tree() {
    echo "$1"
    local c
    for c in $(pgrep -P "$1" || true); do tree "$c"; done
}
# User+system clock ticks of a process tree, children it reaped included.
cpu_ticks() {
    local t=0 p v
    for p in $(tree "$1"); do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13+$14+$15}') || true
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
# Sum of the peak RSS (KiB) of the processes of a tree.
hwm_kib() {
    local t=0 p v
    for p in $(tree "$1"); do
        v=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null) || true
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
wait_port() {
    local i
    for i in $(seq 1 120); do
        if ss -ltn | awk '{print $4}' | grep ":$1\$" >/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "compare.sh: nothing listens on port $1 after 60 s" >&2
    exit 1
}
json() { grep -o "\"$1\": *[0-9.]*" | sed -n 1p | sed 's/.*: *//'; }

# The two DNS lists.
mkdir -p "$WORK/dns"
printf '192.0.2.10\n127.0.0.2\n' >"$WORK/dns/ip.txt"
printf 'example.com\ndbltest.com\n' >"$WORK/dns/domain.txt"
chmod -R a+rX "$WORK/dns"
rbldnsd -n -b 127.0.0.1/5391 -u rbldns -t 300:60:3600 \
    "bl.compare.test:ip4set:$WORK/dns/ip.txt" "dbl.compare.test:dnset:$WORK/dns/domain.txt" \
    >"$WORK/dns/log" 2>&1 &
PIDS+=($!)

lists() {
    cat <<EOF
[[dnsbl]]
name = "COMPARE_IP"
zone = "bl.compare.test"
checks = ["client"]
score = 1.0

[[uribl]]
name = "COMPARE_DBL"
zone = "dbl.compare.test"
test_domain = "dbltest.com"
score = 1.0
EOF
}

# repmilter: the shipped config with the lists and a local resolver; port, extra rule paths.
start_repmilter() {
    local name=$1 port=$2 rules=$3 dir="$WORK/$1"
    mkdir -p "$dir"
    sed -e "s|^listen = .*|listen = \"inet:127.0.0.1:$port\"|" \
        -e "s|^servers = .*|servers = [\"127.0.0.1:5391\"]|" \
        -e "s|^paths = .*|paths = [$rules]|" \
        -e "s|^model = .*|model = \"$dir/learn.model\"|" \
        -e "s|^level = .*|level = \"warn\"|" \
        "$ROOT/config/repmilter.toml" >"$dir/repmilter.toml"
    lists >>"$dir/repmilter.toml"
    "$BIN" serve --config "$dir/repmilter.toml" >"$dir/log" 2>&1 &
    PIDS+=($!)
    echo $! >"$dir/pid"
    wait_port "$port"
}

start_rspamd() {
    local dir="$WORK/rspamd"
    mkdir -p "$dir"/{local.d,override.d,db,run,log}
    cat >"$dir/local.d/options.inc" <<EOF
dns {
  nameserver = ["127.0.0.1:5391"];
  timeout = 1s;
  retransmits = 1;
}
EOF
    cat >"$dir/override.d/rbl.conf" <<EOF
rbls {
  COMPARE_IP { rbl = "bl.compare.test"; from = true; received = false; ipv6 = false; }
  COMPARE_DBL { rbl = "dbl.compare.test"; from = false; ipv4 = false; ipv6 = false; urls = true; emails = false; }
}
EOF
    rspamd -f -i -u root -g root --var "LOCAL_CONFDIR=$dir" --var "DBDIR=$dir/db" \
        --var "RUNDIR=$dir/run" --var "LOGDIR=$dir/log" >"$dir/out" 2>&1 &
    PIDS+=($!)
    echo $! >"$dir/pid"
    wait_port 11332
    # Its workers load the hyperscan database after the port opens.
    sleep 5
}

start_spamassassin() {
    local dir="$WORK/spamd"
    mkdir -p "$dir/home"
    chmod 777 "$dir/home"
    spamd -L -i 127.0.0.1 -p 7830 -u nobody -m 4 --helper-home-dir="$dir/home" -s stderr \
        >"$dir/spamd.log" 2>&1 &
    PIDS+=($!)
    echo $! >"$dir/spamd.pid"
    wait_port 7830
    spamass-milter -p inet:7831@127.0.0.1 -- -d 127.0.0.1 -p 7830 >"$dir/milter.log" 2>&1 &
    PIDS+=($!)
    echo $! >"$dir/milter.pid"
    wait_port 7831
}

# The do-nothing milter: only the end of message is a callback, so pymilter's negotiation
# asks the MTA to skip every other step (connect, HELO, envelope, headers, body).
start_noop() {
    local dir="$WORK/noop"
    mkdir -p "$dir"
    cat >"$dir/noop.py" <<'EOF'
import Milter


class Noop(Milter.Base):
    def eom(self):
        return Milter.ACCEPT


Milter.factory = Noop
Milter.runmilter("noop", "inet:11350@127.0.0.1", 240)
EOF
    /usr/bin/python3 "$dir/noop.py" >"$dir/log" 2>&1 &
    PIDS+=($!)
    echo $! >"$dir/pid"
    wait_port 11350
}

# Loads one milter; prints "msgs/s p50 p99 cpu_us rss_kib" (cpu over all given pids).
RESULTS=()
measure() {
    local label=$1 port=$2 n=$3
    shift 3
    log "$label: warm-up"
    "$BIN" bench --target "inet:127.0.0.1:$port" --corpus "$CORPUS" --messages "$WARMUP" \
        --concurrency "$CONCURRENCY" --json >/dev/null
    log "$label: $n messages"
    local before=0 after=0 p rss=0 out
    for p in "$@"; do before=$((before + $(cpu_ticks "$p"))); done
    out=$("$BIN" bench --target "inet:127.0.0.1:$port" --corpus "$CORPUS" --messages "$n" \
        --concurrency "$CONCURRENCY" --json)
    for p in "$@"; do
        after=$((after + $(cpu_ticks "$p")))
        rss=$((rss + $(hwm_kib "$p")))
    done
    local hz cpu_us
    hz=$(getconf CLK_TCK)
    cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    local errors
    errors=$(echo "$out" | tr -d '\n' | grep -o '"errors": *{[^}]*}' | sed 's/"errors": *//')
    RESULTS+=("$label|$(echo "$out" | json messages_per_second)|$(echo "$out" | json p50)|$(echo "$out" | json p99)|$cpu_us|$rss|$n|$errors")
}

start_repmilter repmilter 11330 '"'"$ROOT"'/rules"'
start_repmilter repmilter-sa 11340 '"'"$ROOT"'/rules", "/usr/share/spamassassin"'
start_rspamd
start_spamassassin
start_noop

measure "repmilter (shipped rules)" 11330 "$MESSAGES" "$(cat "$WORK/repmilter/pid")"
measure "repmilter (+ SpamAssassin stock rules)" 11340 "$MESSAGES" "$(cat "$WORK/repmilter-sa/pid")"
measure "rspamd 3.4 (proxy, milter mode)" 11332 "$MESSAGES" "$(cat "$WORK/rspamd/pid")"
measure "spamass-milter + spamd" 7831 "$SA_MESSAGES" "$(cat "$WORK/spamd/milter.pid")" "$(cat "$WORK/spamd/spamd.pid")"
measure "a milter that does nothing (pymilter)" 11350 "$MESSAGES" "$(cat "$WORK/noop/pid")"

# smtp-source through a private Postfix: without a milter, then with each.
PF="$WORK/postfix"
mkdir -p "$PF"/{conf,queue,data}
chown postfix:postfix "$PF/data"
smtp-sink -u postfix 127.0.0.1:2526 256 >/dev/null 2>&1 &
PIDS+=($!)
cat >"$PF/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.compare.test
mydestination =
local_recipient_maps =
relay_domains =
relayhost = [127.0.0.1]:2526
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
biff = no
smtputf8_enable = no
smtp_dns_support_level = disabled
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
syslog_name = postfix-compare
default_process_limit = 100
smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_command_timeout = 30s
milter_content_timeout = 60s
EOF
cat >"$PF/conf/master.cf" <<EOF
127.0.0.1:2525 inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
EOF
postfix -c "$PF/conf" start >"$WORK/postfix-start.log" 2>&1 || { cat "$WORK/postfix-start.log" "$PF/maillog" >&2; exit 1; }
wait_port 2525
# One corpus message as smtp-source's message (its headers and body).
SAMPLE=$(find "$CORPUS/spam-2" -name '*.txt' | sort | sed -n 1p)
sed '1{/^From /d}' "$SAMPLE" >"$WORK/sample.eml"

SMTP=()
# smtp_run LABEL MILTER [PID...]: the milter's CPU per message is that of the given process
# trees over the run.
smtp_run() {
    local label=$1 milter=$2
    shift 2
    postconf -c "$PF/conf" -e "smtpd_milters = $milter"
    postfix -c "$PF/conf" reload >/dev/null 2>&1
    sleep 2
    log "Postfix + $label: $SMTP_MESSAGES messages"
    local start end before=0 after=0 p cpu_us="-"
    for p in "$@"; do before=$((before + $(cpu_ticks "$p"))); done
    start=$(date +%s.%N)
    smtp-source -s "$SMTP_SESSIONS" -m "$SMTP_MESSAGES" -f sender@bench.example.net \
        -t rcpt@example.org -F "$WORK/sample.eml" 127.0.0.1:2525
    end=$(date +%s.%N)
    if [ $# -gt 0 ]; then
        for p in "$@"; do after=$((after + $(cpu_ticks "$p"))); done
        cpu_us=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$SMTP_MESSAGES" \
            'BEGIN {printf "%.1f µs", t / hz * 1e6 / n}')
    fi
    SMTP+=("$label|$(awk -v s="$start" -v e="$end" -v n="$SMTP_MESSAGES" 'BEGIN {printf "%.1f", n / (e - s)}')|$cpu_us")
}
smtp_run "no milter" ""
smtp_run "repmilter (shipped rules)" "inet:127.0.0.1:11330" "$(cat "$WORK/repmilter/pid")"
smtp_run "repmilter (+ SpamAssassin stock rules)" "inet:127.0.0.1:11340" \
    "$(cat "$WORK/repmilter-sa/pid")"
smtp_run "rspamd" "inet:127.0.0.1:11332" "$(cat "$WORK/rspamd/pid")"
SMTP_MESSAGES_ALL=$SMTP_MESSAGES
SMTP_MESSAGES=$SA_MESSAGES smtp_run "spamass-milter + spamd" "inet:127.0.0.1:7831" \
    "$(cat "$WORK/spamd/milter.pid")" "$(cat "$WORK/spamd/spamd.pid")"
SMTP_MESSAGES=$SMTP_MESSAGES_ALL
smtp_run "a milter that does nothing (pymilter)" "inet:127.0.0.1:11350" "$(cat "$WORK/noop/pid")"

echo
echo "Milters alone: repmilter bench, $CONCURRENCY sessions, one message per connection, $(nproc) cores, $(date -u +%F)"
echo
echo "| system | messages | messages/s | p50 / p99 latency | CPU per message | peak RSS | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
base_cpu=""
for r in "${RESULTS[@]}"; do
    IFS='|' read -r label rate p50 p99 cpu rss n errors <<<"$r"
    [ -z "$base_cpu" ] && base_cpu=$cpu
    printf '| %s | %s | %.1f | %s µs / %s µs | %s µs (%sx repmilter) | %s KiB | %s |\n' \
        "$label" "$n" "$rate" "$p50" "$p99" "$cpu" \
        "$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN {printf "%.1f", a / b}')" "$rss" "${errors:-{\}}"
done
echo
echo "Through Postfix: smtp-source, $SMTP_SESSIONS sessions, one corpus message ($(wc -c <"$WORK/sample.eml") bytes)"
echo
echo "| milter | messages/s | share of no milter | milter CPU per message |"
echo "| --- | --- | --- | --- |"
base=""
for r in "${SMTP[@]}"; do
    IFS='|' read -r label rate cpu <<<"$r"
    [ -z "$base" ] && base=$rate
    printf '| %s | %s | %s%% | %s |\n' "$label" "$rate" \
        "$(awk -v a="$rate" -v b="$base" 'BEGIN {printf "%.1f", 100 * a / b}')" "$cpu"
done
