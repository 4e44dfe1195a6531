# sa-vm: a vchan echo server for each domain dom0 says it serves (`ipc/serve` in its own
# home, published by dom0), on the rendezvous node dom0 made for the pair. It follows each
# client's entry in dom0's map: a client under a new domid is served again.
R ready 1
if serve=$(peers serve); then
	R peers "serve=[$serve]"
	for name in $serve; do
		follow_peer "$name" /etc/vchan-echo-server &
	done
fi
