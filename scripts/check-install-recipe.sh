#!/usr/bin/env bash
# The README's recipe for another project, tried for real: install the binary
# into a temporary root, then run it on a scenario folder outside this
# repository that drives that project's own program, with a JUnit report.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo install --quiet --path "$repo/harness" --root "$work/root" --locked --profile dist
cp -r "$repo/examples/user-project" "$work/project"
cd "$work/project"
"$work/root/bin/shm-harness" run --format junit --output junit.xml scenarios/
grep -q '<testsuites name="shm-harness" tests="1" failures="0"' junit.xml
echo "install recipe: ok ($work/root/bin/shm-harness on a scenario folder outside the repository)"
