# Sourced by the commands in Scripts/ for their --help (not run on its own). `qst_usage` prints the
# sourcing script's usage: the comment block right after its shebang, without the leading "# ".
# One rule for every script instead of a line range written into each, which drifted from the
# headers it was meant to print (BENCHMARKS.md §36, §37). Source it before the script changes
# directory (the script's path is resolved here):
#
#   source "$(dirname "${BASH_SOURCE[0]}")/usage.sh"
#   case "${1:-}" in -h|--help) qst_usage; exit 0 ;; esac
qst_usage_script="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)/$(basename "${BASH_SOURCE[1]}")"
qst_usage() { awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$qst_usage_script"; }
