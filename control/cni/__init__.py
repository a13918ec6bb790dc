"""fastnet-cni: fastnet as a CNI plugin under an existing container engine (podman, containerd).

    spec.py     the CNI protocol: versions, the error object, results in each version's shape
    config.py   the network configuration and the CNI_* environment, validated (pydantic)
    ipam.py     a delegated `ipam` plugin (e.g. host-local), run from CNI_PATH as the spec says
    attach.py   ADD/DEL/CHECK/GC/STATUS on the host's control plane, one container at a time
    plugin.py   the `fastnet-cni` executable: reads the call, prints the result or the error

The runtime owns the container's network namespace (CNI_NETNS); fastnet adopts it: a bind
mount under the keeper's `rt/netns/.cni/<project>/` holds a reference, so the datapath, the
resolver and `fastnet exec` see it as any other container's, and DEL lets go of it without
ever killing a process in it or deleting it.
"""
