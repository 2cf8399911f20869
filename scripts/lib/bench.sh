# Sourced by the bench scripts: small helpers they all use.
# log MSG…: to stderr, prefixed with the script's name.
log() { echo "$(basename "$0" .sh): $*" >&2; }
# now: seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# calc EXPR: awk arithmetic.
calc() { awk "BEGIN { print $* }"; }
# median N…: the median of numbers.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
