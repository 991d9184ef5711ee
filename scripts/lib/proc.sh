# Shared by the load scripts (source it): CPU time and resident memory of a server process and
# its children, read from /proc (Kamailio forks its workers; our servers are one process).

# cpu_ticks PID: utime+stime, in clock ticks, of PID and its children still alive.
cpu_ticks() {
  local total=0 pid rest
  for pid in $(tree_pids "$1"); do
    rest=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${rest##*) }
    # After "pid (comm) ": state ppid ... utime is field 14, stime 15 (12 and 13 here).
    set -- $rest
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# rss_kib PID: resident memory in KiB of PID and its children.
rss_kib() {
  local total=0 pid
  for pid in $(tree_pids "$1"); do
    total=$((total + $(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# tree_pids PID: PID and its children (one level: Kamailio forks its workers directly), one
# per line.
tree_pids() {
  local root=$1 stat pid rest
  for stat in /proc/[0-9]*/stat; do
    pid=${stat#/proc/}
    pid=${pid%/stat}
    rest=$(cat "$stat" 2>/dev/null) || continue
    rest=${rest##*) }
    set -- $rest
    if [ "$pid" = "$root" ] || [ "$2" = "$root" ]; then
      echo "$pid"
    fi
  done
}
