"""`format_g`: Python's ``'%g'`` for a whole numpy array at once, byte for byte (correct rounding,
ties decided on the exact binary value), with table look-ups; the rare values outside
``[1e-4, 1)`` that are not small integers go through Python. See docs/architecture.md.
"""

from __future__ import annotations

import sys

import numpy as np

_SLOT = 16  # bytes per token while formatting: the longest '%g' text is 13 characters + separator
_LITTLE = sys.byteorder == "little"
_INT_TABLE_SIZE = 4096


def _build_tables() -> dict[str, np.ndarray]:
    """Look-up tables, as little-endian uint64 words holding ASCII bytes (NUL = nothing)."""
    q = np.arange(1000, dtype=np.uint64)
    d = [np.uint64(48) + q // np.uint64(100), np.uint64(48) + q // np.uint64(10) % np.uint64(10)]
    d.append(np.uint64(48) + q % np.uint64(10))
    full = d[0] | (d[1] << np.uint64(8)) | (d[2] << np.uint64(16))  # three digits of 000..999
    ns = np.full(1000, 3, np.int64)
    ns[q % np.uint64(10) == 0] = 2
    ns[q % np.uint64(100) == 0] = 1
    strip = full.copy()  # the same without trailing zeros
    strip[ns == 2] &= np.uint64(0xFFFF)
    strip[ns == 1] &= np.uint64(0xFF)
    lo = np.where(q == 0, np.uint64(0), strip) << np.uint64(24)  # low half, placed at bytes 3..5
    lo_ns = np.where(q == 0, 0, ns)
    prefix = np.zeros((4, 8), np.uint8)  # '0.' + z zeros, right-aligned in bytes 0..7
    for z in range(4):
        txt = b"0." + b"0" * z
        prefix[z, 8 - len(txt) :] = np.frombuffer(txt, np.uint8)
    ints = np.zeros((_INT_TABLE_SIZE, 8), np.uint8)
    int_len = np.zeros(_INT_TABLE_SIZE, np.int64)
    for i in range(_INT_TABLE_SIZE):
        txt = str(i).encode()
        ints[i, : len(txt)] = np.frombuffer(txt, np.uint8)
        int_len[i] = len(txt)
    return {
        "full": full,
        "strip": strip,
        "ns": ns,
        "lo": lo,
        "lo_ns": lo_ns,
        "prefix": prefix.view(np.uint64).ravel(),
        "ints": ints.view(np.uint64).ravel(),
        "int_len": int_len,
        "scales": np.array([1e6, 1e7, 1e8, 1e9]),
    }


_TABLES: dict[str, np.ndarray] | None = None


def _tables() -> dict[str, np.ndarray]:
    global _TABLES
    if _TABLES is None:
        _TABLES = _build_tables()
    return _TABLES


def _two_product_err(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact ``a*b - fl(a*b)`` (Dekker's TwoProduct without FMA)."""
    split = 134217729.0  # 2**27 + 1
    c = split * a
    ah = c - (c - a)
    al = a - ah
    c = split * b
    bh = c - (c - b)
    bl = b - bh
    err: np.ndarray = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return err


def _format_unit(
    a: np.ndarray, seps: np.ndarray, t: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words and lengths of '%g' for `a` in ``[1e-4, 1)``; also the positions that round up to 1."""
    u8 = np.uint8
    z = (a < 0.1).view(u8) + (a < 0.01).view(u8) + (a < 0.001).view(u8)  # zeros after '0.'
    scale = t["scales"][z]
    p = a * scale  # exact power of ten: one rounding, so ties can be told apart below
    m = np.rint(p)
    tie = np.flatnonzero(np.abs(m - p) == 0.5)
    if tie.size:  # p sits on .5: the exact product decides (round half to even only on a real tie)
        err = _two_product_err(a[tie], scale[tie], p[tie])
        f = np.floor(p[tie])
        m[tie] = f + ((err > 0) | ((err == 0) & (np.mod(f, 2.0) == 1.0)))
    mi = m.astype(np.int64)
    ones = np.zeros(0, np.int64)
    carry = np.flatnonzero(mi >= 1_000_000)
    if carry.size:  # 0.0999999.. -> 0.1: one zero less; 0.9999996 -> 1 (formatted elsewhere)
        ones = carry[z[carry] == 0]
        mi[carry] = 100_000
        z[carry] = np.maximum(z[carry], 1) - 1
    hi = mi // 1000
    lo = mi - hi * 1000
    lo0 = lo == 0
    w1 = np.where(lo0, t["strip"][hi], t["full"][hi] | t["lo"][lo])
    ns = np.where(lo0, t["ns"][hi], 3 + t["lo_ns"][lo])
    w1 |= seps.astype(np.uint64) << (ns.astype(np.uint64) << np.uint64(3))
    words = np.empty((a.size, 2), np.uint64)
    words[:, 0] = t["prefix"][z]
    words[:, 1] = w1
    return words, 3 + z + ns, ones


def format_g(values: np.ndarray, seps: np.ndarray) -> tuple[bytes, np.ndarray]:
    """``b"".join(b"%g" % v + sep)`` for float64 `values` and separator bytes `seps` (uint8).

    Returns the text and the byte length of each token (separator included). Identical to
    Python's ``'%g'`` for every double: values in ``[1e-4, 1)`` are rounded to six significant
    digits exactly (a product by an exact power of ten, with an exact error term where the product
    lands on a tie), integers ``0..4095`` come from a table, anything else is formatted by Python.
    """
    n = int(values.shape[0])
    if n == 0:
        return b"", np.zeros(0, np.int64)
    if not _LITTLE:  # pragma: no cover - the word tables assume little-endian
        toks = [(b"%g" % v) + bytes((s,)) for v, s in zip(values.tolist(), seps.tolist(), strict=True)]
        return b"".join(toks), np.array([len(t) for t in toks], np.int64)
    t = _tables()
    fast = (values >= 1e-4) & (values < 1.0)
    if fast.all():
        words, lengths, ones = _format_unit(values, seps, t)
        rest = ones
    else:
        fi = np.flatnonzero(fast)
        words = np.zeros((n, 2), np.uint64)
        lengths = np.zeros(n, np.int64)
        w, ln, ones = _format_unit(values[fi], seps[fi], t)
        words[fi] = w
        lengths[fi] = ln
        rest = np.union1d(np.flatnonzero(~fast), fi[ones])
    if rest.size:
        v = values[rest].copy()
        v[np.isin(rest, fi[ones] if not fast.all() else ones)] = 1.0
        s = seps[rest]
        is_int = (v >= 0.0) & (v < _INT_TABLE_SIZE) & (np.floor(v) == v) & ~np.signbit(v)
        ii = np.flatnonzero(is_int)
        if ii.size:
            iv = v[ii].astype(np.int64)
            il = t["int_len"][iv]
            words[rest[ii], 0] = 0
            words[rest[ii], 1] = t["ints"][iv] | (s[ii].astype(np.uint64) << (il.astype(np.uint64) << np.uint64(3)))
            lengths[rest[ii]] = il + 1
        slow = np.flatnonzero(~is_int)
        if slow.size:
            toks = [(b"%g" % x) + bytes((c,)) for x, c in zip(v[slow].tolist(), s[slow].tolist(), strict=True)]
            buf = b"".join(tok.ljust(_SLOT, b"\0") for tok in toks)
            words[rest[slow]] = np.frombuffer(buf, np.uint64).reshape(-1, 2)
            lengths[rest[slow]] = [len(tok) for tok in toks]
    return words.view(np.uint8).tobytes().translate(None, b"\0"), lengths
