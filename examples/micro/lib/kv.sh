#!/bin/sh
# A tiny line-protocol store, one command per connection (served by `nc -ll -e`):
#   PING | SET key value | GET key | INCR key | PUSH list item | POP list | LIST list
# Keys and lists are files under /data (a named volume); a mkdir lock orders writers.
cd /data || exit 1
read -r cmd key val
case "$key" in *[!A-Za-z0-9_-]*) echo "ERR bad key"; exit 0 ;; esac
lock() {
    until mkdir .lock 2>/dev/null; do usleep 10000; done
    trap 'rmdir .lock' EXIT
}
case "$cmd" in
    PING) echo PONG ;;
    SET) lock; echo "$val" > "k.$key"; echo OK ;;
    GET) cat "k.$key" 2>/dev/null || echo ;;
    INCR) lock; n=$(($(cat "k.$key" 2>/dev/null || echo 0) + 1)); echo "$n" > "k.$key"; echo "$n" ;;
    PUSH) lock; echo "$val" >> "l.$key"; echo OK ;;
    POP) lock; if [ -s "l.$key" ]; then head -n 1 "l.$key"; sed -i 1d "l.$key"; else echo; fi ;;
    LIST) cat "l.$key" 2>/dev/null; echo END ;;
    *) echo "ERR unknown command: $cmd" ;;
esac
