/sbin/ip link set eth0 up
for a in "--start-daemon master --mcast-group 1.2.3.4" "--start-daemon master --mcast-group ff02::x" "--start-daemon master --mcast-group 10.0.0.1" "--start-daemon master --mcast-group ff02::1" "--start-daemon master --syncid 256" "--start-daemon master --mcast-port 0" "--start-daemon master --mcast-ttl 0" "--start-daemon master --sync-maxlen 70000" "--start-daemon foo" "--stop-daemon foo" "--start-daemon master --mcast-interface eth0 --syncid 3 --syncid 4" "--stop-daemon master --syncid 3" "-L --daemon --syncid 3" "--start-daemon" "--start-daemon master" "--start-daemon master --mcast-interface nosuch" "-A -t 1.2.3.4:80 --syncid 3"; do echo "== $a"; ipvsadm $a 2>&1; echo "rc=$?"; done
ipvsadm --start-daemon master --mcast-interface eth0 --syncid 5 --sync-maxlen 1000 --mcast-group 239.1.2.3 --mcast-port 9000 --mcast-ttl 3; echo "rc=$?"
ipvsadm --start-daemon backup --mcast-interface eth0 --syncid 6; echo "rc=$?"
ipvsadm --start-daemon backup --mcast-interface eth0 --syncid 6; echo "again rc=$?"
ipvsadm -L --daemon; echo "rc=$?"
ipvsadm -L -n --daemon; echo "rc=$?"
ipvsadm --stop-daemon master; echo "rc=$?"
ipvsadm --stop-daemon master; echo "again rc=$?"
ipvsadm -L --daemon; echo "rc=$?"
ipvsadm -S -n; echo "save rc=$?"
