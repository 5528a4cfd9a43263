#!/bin/sh
# The data store: one line-protocol command per connection, kept in /data (a volume).
#   PING -> PONG;  ADD <text> -> OK;  LIST -> every note, then END
read -r cmd rest
case "$cmd" in
    PING) echo PONG ;;
    ADD)
        [ -n "$rest" ] || { echo "ERR empty note"; exit 0; }
        echo "$rest" >> /data/notes && echo OK ;;
    LIST) cat /data/notes 2>/dev/null; echo END ;;
    *) echo "ERR unknown command: $cmd" ;;
esac
