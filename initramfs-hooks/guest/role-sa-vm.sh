# sa-vm: a vchan server (an echo) for workload-vm on the rendezvous node dom0 made for it.
R ready 1
(
	for i in $(seq 1 900); do
		W=$(xenstore-read /ipc/domain-map/workload-vm 2>/dev/null) &&
			xenstore-exists "ipc/direct/$W" 2>/dev/null && break
		sleep 0.2
	done
	mkfifo /tmp/loop
	exec 3<>/tmp/loop
	vchan-socket-proxy -m server -s data/vchan_state "$W" \
		"/local/domain/$DOMID/ipc/direct/$W" 3 > /tmp/vchan.log 2>&1 &
	R vchan_server "serving workload-vm (domid $W)"
	sleep 5
	R vchan_server_log "$(tr '\n' ' ' < /tmp/vchan.log) nodes: $(xenstore-ls -p \
		"/local/domain/$DOMID/ipc/direct/$W" 2>&1 | tr '\n' ' ')"
) &
