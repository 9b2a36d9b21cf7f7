#!/usr/bin/env bash
# Every keepalived checker against real servers (NAT lab, nginx on rs1..rs3):
#  (a) HTTP_GET: a realserver whose body's MD5 differs from `digest` (the
#      digest taken with curl | md5sum, not xlvs) goes down, as does one that
#      answers 500;
#  (b) SSL_GET against nginx with a self-signed certificate;
#  (c) DNS_CHECK against dnsmasq; UDP_CHECK against a UDP echo server;
#      PING_CHECK over IPv4 and IPv6 (a missing host goes down);
#  (d) MISC_CHECK with misc_dynamic: the script's exit code sets the weight
#      -L -n shows; a hanging script is killed at misc_timeout and fails;
#  (e) every realserver down: new connections go to the sorry server,
#      quorum_down ran; back up: quorum_up ran; notify_up/notify_down got
#      their arguments;
#  (f) alpha: a realserver starts out of rotation until its first success;
#  (g) omega: at shutdown, notify_down of the live realservers and
#      quorum_down ran.
# Needs root, keepalived, dnsmasq, openssl, and target/release/{xlvsd,xlvsadm}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/testlib.sh
. "$HERE/../lib/testlib.sh"

test_init hc

LAB_IPV6=1 lab_nat_up "$ID" 1 || fail "lab_nat_up"
D=$(lab_dir "$ID")
lab_add_rs3 "$ID" || fail "lab_add_rs3"
V=$LAB_VIP R1=$LAB_RS1_IP R2=$LAB_RS2_IP R3=$LAB_RS3_IP
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=rs1 -keyout "$D/rs1.key" -out "$D/rs1.crt" >/dev/null 2>&1 || fail "openssl"
LAB_NGINX_EXTRA="        listen 443 ssl;
        ssl_certificate $D/rs1.crt;
        ssl_certificate_key $D/rs1.key;
        location = /health { return 200 \"ok\\n\"; }" lab_nginx "$ID" rs1 80 || fail "nginx rs1"
LAB_NGINX_EXTRA='        location = /health { return 500; }' lab_nginx "$ID" rs2 80 || fail "nginx rs2"
lab_nginx "$ID" rs3 80 || fail "nginx rs3"
lab_wait_port "$ID" rs1 443 tcp || fail "nginx rs1 TLS"
lab_exec "$ID" rs1 dnsmasq -k --conf-file=/dev/null --user=root --port=53 \
  --listen-address="$R1" --bind-interfaces --no-resolv --no-hosts \
  --address=/example.test/10.9.9.9 --pid-file="$D/dnsmasq.pid" >"$D/dnsmasq.log" 2>&1 &
bg_track $!
lab_wait_port "$ID" rs1 53 udp || fail "dnsmasq"
lab_udp_echo "$ID" rs1 5353 || fail "udp echo rs1"

# The digest of rs1's / from curl and md5sum, independent of xlvs.
DIGEST=$(lab_exec "$ID" dir curl -sS --max-time 5 "http://$R1/" | md5sum | awk '{print $1}')
[ ${#DIGEST} = 32 ] || fail "no digest of rs1's page"

# MISC_CHECK scripts: check.sh NAME exits with the code in code-NAME; hang.sh
# never returns; notify.sh appends its arguments to notify.log.
printf '#!/bin/sh\nexit "$(cat %s/code-"$1")"\n' "$D" >"$D/check.sh"
printf '#!/bin/sh\nexec sleep 3600 # hang-%s\n' "$ID" >"$D/hang.sh"
printf '#!/bin/sh\necho "$@" >>%s/notify.log\n' "$D" >"$D/notify.sh"
chmod 755 "$D/check.sh" "$D/hang.sh" "$D/notify.sh"
for n in dyn q1 q2 a1; do echo 0 >"$D/code-$n"; done
echo 7 >"$D/code-dyn"
echo 1 >"$D/code-a1"
: >"$D/notify.log"

CONF=$D/keepalived.conf
cat_conf() {
  cat <<CONF
global_defs {
    router_id xlvs_$ID
    script_user root
    enable_script_security
}
virtual_server $V 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $R1 80 {
        HTTP_GET {
            url {
                path /
                digest $DIGEST
            }
            connect_timeout 1
            retry 0
        }
    }
    real_server $R2 80 {
        HTTP_GET {
            url {
                path /
                digest $DIGEST
            }
            connect_timeout 1
            retry 0
        }
    }
}
virtual_server $V 81 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $R1 80 {
        HTTP_GET {
            url {
                path /health
            }
            connect_timeout 1
            retry 0
        }
    }
    real_server $R2 80 {
        HTTP_GET {
            url {
                path /health
            }
            connect_timeout 1
            retry 0
        }
    }
}
virtual_server $V 443 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $R1 443 {
        SSL_GET {
            url {
                path /
                digest $DIGEST
            }
            connect_timeout 1
            retry 0
        }
    }
    real_server $R2 443 {
        SSL_GET {
            url {
                path /
                digest $DIGEST
            }
            connect_timeout 1
            retry 0
        }
    }
}
virtual_server $V 53 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol UDP
    real_server $R1 53 {
        DNS_CHECK {
            type A
            name example.test
            connect_timeout 1
            retry 0
        }
    }
    real_server $R2 53 {
        DNS_CHECK {
            type A
            name example.test
            connect_timeout 1
            retry 0
        }
    }
}
virtual_server $V 5353 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol UDP
    real_server $R1 5353 {
        UDP_CHECK {
            payload 68656c6c6f
            require_reply
            connect_timeout 1
            retry 0
        }
    }
    real_server $R2 5353 {
        UDP_CHECK {
            payload 68656c6c6f
            require_reply
            connect_timeout 1
            retry 0
        }
    }
}
virtual_server $V 85 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $R1 80 {
        PING_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server 10.10.0.99 80 {
        PING_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
virtual_server $LAB_VIP6 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server $LAB_RS1_IP6 80 {
        PING_CHECK {
            connect_timeout 1
            retry 0
        }
    }
    real_server fd00:10::99 80 {
        PING_CHECK {
            connect_timeout 1
            retry 0
        }
    }
}
virtual_server $V 82 {
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server $R1 80 {
        weight 1
        MISC_CHECK {
            misc_path "$D/check.sh dyn"
            misc_dynamic
            misc_timeout 2
        }
    }
    real_server $R2 80 {
        MISC_CHECK {
            misc_path "$D/hang.sh"
            misc_timeout 2
        }
    }
}
virtual_server $V 83 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    omega
    quorum 1
    sorry_server $R3 80
    quorum_up "$D/notify.sh quorum up"
    quorum_down "$D/notify.sh quorum down"
    real_server $R1 80 {
        notify_up "$D/notify.sh rs1 up"
        notify_down "$D/notify.sh rs1 down"
        MISC_CHECK {
            misc_path "$D/check.sh q1"
        }
    }
    real_server $R2 80 {
        notify_up "$D/notify.sh rs2 up"
        notify_down "$D/notify.sh rs2 down"
        MISC_CHECK {
            misc_path "$D/check.sh q2"
        }
    }
}
virtual_server $V 84 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    alpha
    real_server $R1 80 {
        MISC_CHECK {
            misc_path "$D/check.sh a1"
        }
    }
}
CONF
}
cat_conf >"$CONF"
out=$(lab_exec "$ID" dir timeout 20 keepalived -t -f "$CONF" 2>&1) || fail "keepalived -t rejects the file: $out"
start_xlvsd "$ID" --iface "$LAB_DIR_EXT" --iface "$LAB_DIR_INT" --keepalived-conf "$CONF"

# wait_health SERVICE REALSERVER CHECKER STATE [SECONDS]: until --health shows it.
wait_health() {
  local i H
  for ((i = 0; i < ${5:-8} * 10; i++)); do
    H=$(xadm "$ID" -L -n --health)
    printf '%s\n' "$H" | has -E "^[A-Z]+ +$1 +$2 +$3 +$4 " && return 0
    sleep 0.1
  done
  fail "--health: $2 ($3) of $1 not $4:
$H"
}
# reason SERVICE REALSERVER: the last result's text.
reason() {
  xadm "$ID" -L -n --health | awk -v s="$1" -v r="$2" '$2 == s && $3 == r && !n++ { $1=$2=$3=$4=$5=$6=""; sub(/^ +/, ""); print }'
}

log "(a) HTTP_GET: digest and status"
wait_health "$V:80" "$R1:80" HTTP_GET UP
wait_health "$V:80" "$R2:80" HTTP_GET DOWN
[[ "$(reason "$V:80" "$R2:80")" == digest:* ]] || fail "rs2 :80 down for '$(reason "$V:80" "$R2:80")', want digest"
wait_health "$V:81" "$R2:80" HTTP_GET DOWN
[[ "$(reason "$V:81" "$R2:80")" == status:*500* ]] || fail "rs2 :81 down for '$(reason "$V:81" "$R2:80")', want status 500"
wait_health "$V:81" "$R1:80" HTTP_GET UP
L=$(xadm "$ID" -L -n)
[ -z "$(lvs_dest_field "$L" "TCP $V:80" "$R2:80" Weight)" ] || fail "rs2 still listed under :80: $L"
[ "$(lab_exec "$ID" cli curl -sS --max-time 3 "http://$V/")" = rs1 ] || fail "VIP:80 not served by rs1"

log "(b) SSL_GET against a self-signed certificate"
wait_health "$V:443" "$R1:443" SSL_GET UP
wait_health "$V:443" "$R2:443" SSL_GET DOWN
[[ "$(reason "$V:443" "$R2:443")" == refused:* ]] || fail "rs2 :443 down for '$(reason "$V:443" "$R2:443")'"
[ "$(lab_exec "$ID" cli curl -ksS --max-time 3 "https://$V/")" = rs1 ] || fail "https through the VIP"

log "(c) DNS_CHECK against dnsmasq"
wait_health "$V:53" "$R1:53" DNS_CHECK UP
wait_health "$V:53" "$R2:53" DNS_CHECK DOWN
wait_health "$V:5353" "$R1:5353" UDP_CHECK UP
wait_health "$V:5353" "$R2:5353" UDP_CHECK DOWN
[[ "$(reason "$V:5353" "$R2:5353")" == refused:* ]] || fail "rs2 :5353 down for '$(reason "$V:5353" "$R2:5353")', want refused"
wait_health "$V:85" "$R1:80" PING_CHECK UP
wait_health "$V:85" "10.10.0.99:80" PING_CHECK DOWN
wait_health "\\[$LAB_VIP6\\]:80" "\\[$LAB_RS1_IP6\\]:80" PING_CHECK UP
wait_health "\\[$LAB_VIP6\\]:80" "\\[fd00:10::99\\]:80" PING_CHECK DOWN

log "(d) MISC_CHECK: misc_dynamic weight, a hanging script killed"
for ((i = 0; i < 50; i++)); do
  L=$(xadm "$ID" -L -n)
  [ "$(lvs_dest_field "$L" "TCP $V:82" "$R1:80" Weight)" = 5 ] && break
  sleep 0.1
done
[ "$(lvs_dest_field "$L" "TCP $V:82" "$R1:80" Weight)" = 5 ] || fail "misc_dynamic exit 7: want weight 5: $L"
echo 12 >"$D/code-dyn"
for ((i = 0; i < 50; i++)); do
  L=$(xadm "$ID" -L -n)
  [ "$(lvs_dest_field "$L" "TCP $V:82" "$R1:80" Weight)" = 10 ] && break
  sleep 0.1
done
[ "$(lvs_dest_field "$L" "TCP $V:82" "$R1:80" Weight)" = 10 ] || fail "misc_dynamic exit 12: want weight 10: $L"
grep -qx -- "-a -t $V:82 -r $R1:80 -m -w 1" <<<"$(xadm "$ID" -S -n)" || fail "-S saved a dynamic weight"
wait_health "$V:82" "$R2:80" MISC_CHECK DOWN 8
[[ "$(reason "$V:82" "$R2:80")" == killed:*timed\ out* ]] || fail "hanging script: '$(reason "$V:82" "$R2:80")', want killed"
sleep 0.5
n=$(pgrep -fc "sleep 3600" || true)
# At most the run in progress may be alive; every earlier one was killed.
[ "${n:-0}" -le 1 ] || fail "$n hanging scripts still run: killed ones survive"

log "(e) all realservers down: the sorry server, quorum scripts"
[ "$(lab_exec "$ID" cli curl -sS --max-time 3 "http://$V:83/")" != rs3 ] || fail ":83 on the sorry server while up"
echo 1 >"$D/code-q1"
echo 1 >"$D/code-q2"
for ((i = 0; i < 50; i++)); do
  grep -qx "quorum down" "$D/notify.log" && break
  sleep 0.1
done
grep -qx "quorum down" "$D/notify.log" || fail "quorum_down did not run: $(cat "$D/notify.log")"
grep -qx "rs1 down" "$D/notify.log" && grep -qx "rs2 down" "$D/notify.log" || fail "notify_down: $(cat "$D/notify.log")"
for i in 1 2 3; do
  [ "$(lab_exec "$ID" cli curl -sS --max-time 3 "http://$V:83/")" = rs3 ] || fail "quorum lost: new connections not on the sorry server"
done
L=$(xadm "$ID" -L -n)
[ -n "$(lvs_dest_field "$L" "TCP $V:83" "$R3:80" Weight)" ] || fail "-L -n does not list the sorry server in charge: $L"
echo 0 >"$D/code-q1"
for ((i = 0; i < 50; i++)); do
  grep -qx "quorum up" "$D/notify.log" && break
  sleep 0.1
done
grep -qx "quorum up" "$D/notify.log" || fail "quorum_up did not run: $(cat "$D/notify.log")"
grep -qx "rs1 up" "$D/notify.log" || fail "notify_up rs1: $(cat "$D/notify.log")"
[ "$(lab_exec "$ID" cli curl -sS --max-time 3 "http://$V:83/")" = rs1 ] || fail "quorum back: :83 not on rs1"

log "(f) alpha: out of rotation until the first success"
for i in 1 2 3 4 5; do
  L=$(xadm "$ID" -L -n)
  [ -z "$(lvs_dest_field "$L" "TCP $V:84" "$R1:80" Weight)" ] || fail "alpha: listed before any success: $L"
  sleep 0.4
done
echo 0 >"$D/code-a1"
for ((i = 0; i < 40; i++)); do
  L=$(xadm "$ID" -L -n)
  [ -n "$(lvs_dest_field "$L" "TCP $V:84" "$R1:80" Weight)" ] && break
  sleep 0.1
done
[ -n "$(lvs_dest_field "$L" "TCP $V:84" "$R1:80" Weight)" ] || fail "alpha: not listed after a success: $L"

log "(g) omega at shutdown"
: >"$D/notify.log"
stop_xlvsd_checked
grep -qx "rs1 down" "$D/notify.log" && grep -qx "quorum down" "$D/notify.log" \
  || fail "omega: want notify_down of rs1 and quorum_down at shutdown: $(cat "$D/notify.log")"
grep -qx "rs2 down" "$D/notify.log" && fail "omega ran notify_down of rs2, which was already down"
pass
