#!/usr/bin/env bash
# poll.sh <seconds>: wait for /tmp/g/DONE up to that long, then copy /tmp/g's text to $OUT
limit=${1:-500}; t=0
while [ ! -f /tmp/g/DONE ] && [ $t -lt $limit ]; do sleep 10; t=$((t+10)); done
cd /tmp/g && find . -type f \( -name "*.txt" -o -name "*.log" -o -name "*.md" -o -name "*.png" -o -name DONE \) -size -5M \
    | while read f; do mkdir -p "$OUT/$(dirname "$f")"; cp "$f" "$OUT/$f"; done
cat /tmp/g/progress.txt 2>/dev/null; tail -3 /tmp/g/en_de/mini_en_de_st1/*_epochs.log 2>/dev/null | cut -c1-300
