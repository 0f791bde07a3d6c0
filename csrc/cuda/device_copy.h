// Copies between GPUs (the two-column net's activations and gradients where the columns meet).
//
// copy_between(dst, dst_device, src, src_device, bytes, route):
//   - same device, route Auto: one cudaMemcpyAsync on the current stream (route Peer or Host on
//     one device take the paths below anyway, so that one GPU can exercise them);
//   - different devices, route Auto or Peer, peer access possible: cudaMemcpyPeerAsync on a
//     dedicated copy stream of the destination device (peer access enabled once, both ways);
//   - otherwise (route Host, or no peer access): staged through a pinned host buffer, device to
//     host on a copy stream of the source device, then host to device on one of the destination.
// Ordering: the copy starts after all work queued so far on the current stream of both devices,
// and work queued afterwards on either device's current stream starts after it (the source waits
// too, so that it cannot overwrite what is still being read). The host never waits.
// The current stream is the calling thread's (stream.h); with the default (legacy) stream it
// means each device's own default stream, which is what the net uses.
#pragma once
#include <cstddef>

#include <cuda_runtime.h>

namespace alexnet_ext::cuda {

enum class CopyRoute { Auto, Peer, Host };

void copy_between(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
                  CopyRoute route);

// Whether `device` can read and write `peer`'s memory directly (cached; enables access once).
bool peer_access(int device, int peer);

}  // namespace alexnet_ext::cuda
