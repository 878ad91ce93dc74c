"""Host index arrays onto the inputs' device without draining its queue.

A copy from pageable host memory to a CUDA device waits for every operation queued on the stream
before it (CUDA's rule for pageable host-to-device copies): one upload per index array between
queued kernels serialises host and device (issue 19: the packed paths made ~35 per call). CUDA
inputs (torch, CuPy) stage the index in pinned memory and copy it asynchronously on the current
stream; every other array library gets ``xp.asarray``. ``count`` counts the uploads (tests hold
the packed paths to a bound).
"""
from __future__ import annotations

import collections
import sys

import numpy as np

from ._validate import device_of

__all__ = ["to_device", "index", "mask", "count", "kept"]

#: uploads made so far (all namespaces): tests read the difference around a call
count = 0
_PENDING = collections.deque()  # CuPy: (event, pinned buffer) kept alive until its copy is done
_MAX_PENDING = 64


def to_device(xp, host, like):
    """The NumPy array ``host`` as an array of ``xp`` on the device of ``like`` (same dtype and shape)."""
    global count
    count += 1
    host = np.ascontiguousarray(host)
    mod = type(like).__module__
    if mod.startswith("torch") and like.is_cuda:
        torch = sys.modules["torch"]
        # the caching host allocator keeps the pinned block until the copy that reads it is done
        host = host if host.flags.writeable else host.copy()  # torch.from_numpy warns on read-only arrays
        return torch.from_numpy(host).pin_memory().to(like.device, non_blocking=True)
    if mod.startswith("cupy") and host.nbytes:
        return _cupy(sys.modules["cupy"], host, like)
    return xp.asarray(host, device=device_of(like))


#: device arrays of recent packed layouts (:func:`kept`), least recently used first: a few, so the
#: device memory held stays a few index arrays
_KEPT = {}
_KEPT_MAX = 4


def kept(key, like, build):
    """``build()`` (device arrays made from host indices, e.g. by :func:`to_device`) kept for the next
    calls with the same ``key`` on ``like``'s device and current stream, when ``like`` is a CUDA torch
    tensor or a CuPy array (elsewhere an upload costs no queue drain: built every call). ``key``
    must name the host values (e.g. the offsets' bytes), never an array that could change in place;
    None: not kept. The arrays are shared: the caller never writes them. Per stream, as
    ``CupyOps.token_map``: that stream orders the upload before every later reader, and the memory
    pools (torch's, CuPy's) give a block back to the stream that allocated it."""
    where = None if key is None else _stream_key(like)
    if where is None:
        return build()
    k = (key, where)
    got = _KEPT.pop(k, None)
    if got is None:
        got = build()
        while len(_KEPT) >= _KEPT_MAX:
            _KEPT.pop(next(iter(_KEPT)))  # the least recently used
    _KEPT[k] = got
    return got


def _stream_key(like):
    """(library, device, current stream handle) of a CUDA torch tensor or a CuPy array, else None."""
    mod = type(like).__module__
    if mod.startswith("torch"):
        if not like.is_cuda:
            return None
        torch, dev = sys.modules["torch"], like.get_device()
        raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # the handle without a Stream object
        return "torch", dev, raw(dev) if raw is not None else torch.cuda.current_stream(dev).cuda_stream
    if mod.startswith("cupy"):
        cp = sys.modules["cupy"]
        with like.device:
            return "cupy", like.device.id, cp.cuda.get_current_stream().ptr
    return None


def _cupy(cp, host, like):
    while _PENDING and (_PENDING[0][0].done or len(_PENDING) > _MAX_PENDING):
        ev, _ = _PENDING.popleft()
        ev.synchronize()  # done already, or the oldest of too many
    with like.device:
        mem = cp.cuda.alloc_pinned_memory(host.nbytes)  # CuPy's pool reuses it once freed: keep it alive
        staged = np.frombuffer(mem, host.dtype, host.size).reshape(host.shape)
        staged[...] = host
        out = cp.empty(host.shape, dtype=host.dtype)
        stream = cp.cuda.get_current_stream()
        out.set(staged, stream=stream)
        _PENDING.append((stream.record(), mem))
    return out


def index(xp, idx, like, dtype=np.int64):
    """Host integer index ``idx`` on ``like``'s device (``dtype``: int64, or int32 for small takes)."""
    return to_device(xp, np.asarray(idx, dtype=dtype), like)


def mask(xp, m, like):
    """Host boolean mask ``m`` on ``like``'s device."""
    return to_device(xp, np.asarray(m, dtype=bool), like)
