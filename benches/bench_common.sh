# Helpers shared by the cluster benchmarks (sourced, not run).

fill() { # file size: a file whose blocks are all allocated
  truncate -s "$2" "$1"
  dd if=/dev/zero of="$1" bs=1M count=$(( $(stat -c %s "$1") / 1048576 )) oflag=direct conv=notrunc status=none
}

cpu_seconds() { # utime + stime of the given pids, summed, in seconds
  local hz total=0 p
  hz=$(getconf CLK_TCK)
  for p in "$@"; do
    total=$(awk -v t="$total" -v hz="$hz" '{ sub(/^.*\) /, ""); print t + ($12 + $13) / hz }' "/proc/$p/stat")
  done
  echo "$total"
}

# fio_raw DEV SIZE SECONDS BS QD SYNC OUT.json: io_uring O_DIRECT writes on
# the raw device (random for 4k, sequential otherwise), --sync=SYNC.
fio_raw() {
  local rw
  rw=$([ "$4" = 4k ] && echo randwrite || echo write)
  fio --name=raw --filename="$1" --ioengine=io_uring --direct=1 --sync="$6" --rw="$rw" --bs="$4" \
    --iodepth="$5" --runtime="$3" --time_based --size="$2" --output-format=json \
    --output="$7" >/dev/null
}
