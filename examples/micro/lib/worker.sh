#!/bin/sh
# The worker: takes jobs from the queue and writes results to the db. A job whose text
# is "crash" is a poison message: the worker dies on it (exit 1), and its restart policy
# brings it back to carry on with the next one.
kv() { host=$1; shift; echo "$*" | nc "$host" 7000; }
start=$(kv db INCR worker_starts)
echo "worker start #$start"
while true; do
    job=$(kv queue POP jobs)
    if [ -z "$job" ]; then
        usleep 200000
        continue
    fi
    id=${job%% *}
    text=${job#* }
    if [ "$text" = crash ]; then
        echo "job $id: poison job, crashing"
        exit 1
    fi
    result=$(echo "$text" | tr a-z A-Z)
    kv db PUSH results "$id $result (worker start #$start)" >/dev/null
    echo "job $id done: $result"
done
