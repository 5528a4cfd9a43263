# Sourced by the gateway's CGI scripts: the address of one API replica, in turn.
# The DNS server rotates the replicas' addresses at every answer, but glibc's
# getaddrinfo (wget's) sorts them again by RFC 6724's longest-prefix rule and would
# always pick the same one, as it does under Docker; so take the first as it comes.
api=$(nslookup -type=a api 2>/dev/null | awk '/^Name:/ { n = 1 } n && /^Address:/ { print $2; exit }')
api=${api:-api}
