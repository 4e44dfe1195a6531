# workload-vm: network through net-vm's vif backend, and a vchan client of sa-vm.
modprobe xen-netfront || G "modprobe xen-netfront failed"
(
	for i in $(seq 1 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.3; done
	ip link set eth0 up
	ip addr add 10.0.5.103/24 dev eth0
	sleep 1
	if ping -c 3 -W 2 10.0.5.1 > /tmp/ping.log 2>&1; then
		R vif_ping "OK $(tail -1 /tmp/ping.log)"
	else
		R vif_ping "FAIL $(tr '\n' ' ' < /tmp/ping.log)"
	fi
) &
for i in $(seq 1 300); do
	S=$(xenstore-read /ipc/domain-map/sa-vm 2>/dev/null) &&
		xenstore-exists "/local/domain/$S/ipc/direct/$DOMID/ring-ref" 2>/dev/null && break
	sleep 0.2
done
R vchan_rendezvous "sa-vm=$S: $(xenstore-ls -p "/local/domain/$S/ipc/direct/$DOMID" 2>&1 |
	tr '\n' ' ')"
msg="hello-over-vchan-from-$DOMID"
# The client stays connected for a while after the echo, so that the rendezvous node
# (which libxenvchan removes on close) still exists when net-vm probes it.
mkfifo /tmp/vin
exec 4<>/tmp/vin
vchan-socket-proxy "$S" "/local/domain/$S/ipc/direct/$DOMID" - < /tmp/vin \
	> /tmp/vchan.out 2> /tmp/vchan.err &
client=$!
echo "$msg" >&4
for i in $(seq 1 100); do grep -q "$msg" /tmp/vchan.out 2>/dev/null && break; sleep 0.2; done
R vchan_client "got [$(cat /tmp/vchan.out)]"
(sleep 45; kill "$client") &
