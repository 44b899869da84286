#!/usr/bin/env bash
# Builds the Debian package: target/debian/repmilter_<version>-1_<arch>.deb.
# Needs cargo-deb (`cargo install cargo-deb`). The man pages and the installed config are
# generated here from the sources they describe, so they cannot drift:
#   - repmilter(8) and a page per subcommand from the command line's definitions, and
#     repmilter.toml(5) from config/repmilter.toml (`repmilter man`);
#   - /etc/repmilter/repmilter.toml is config/repmilter.toml with absolute paths: shipped
#     rules in /usr/share/repmilter/rules, local ones in /etc/repmilter/rules.d, the learned
#     model and the feedback spool in /var/lib/repmilter.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/package
rm -rf "$OUT"
mkdir -p "$OUT/man"

cargo build --release --locked
target/release/repmilter man --dir "$OUT/man"
gzip -9n "$OUT"/man/*

sed -e 's#^paths = \["\.\./rules"\]#paths = ["/usr/share/repmilter/rules", "/etc/repmilter/rules.d"]#' \
    -e 's#^model = "learn.model"#model = "/var/lib/repmilter/learn.model"#' \
    -e 's#^\# spool = "spool"#\# spool = "/var/lib/repmilter/spool"#' \
    config/repmilter.toml >"$OUT/repmilter.toml"
# Every replacement took: a sample edited without this script would ship relative paths.
grep -q '^paths = \["/usr/share/repmilter/rules", "/etc/repmilter/rules.d"\]' "$OUT/repmilter.toml"
grep -q '^model = "/var/lib/repmilter/learn.model"' "$OUT/repmilter.toml"

gzip -9nc CHANGELOG.md >"$OUT/changelog.gz"
# The Debian changelog: one entry per package version, pointing at the upstream one.
VERSION=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"name":"repmilter","version":"\([^"]*\)".*/\1/p')
{
    echo "repmilter ($VERSION-1) unstable; urgency=medium"
    echo
    echo "  * Upstream release $VERSION; the changes are in changelog.gz."
    echo
    echo " -- The repmilter developers <repmilter@users.noreply.github.com>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$OUT/changelog.Debian.gz"
cargo deb --no-build --strip "$@"
