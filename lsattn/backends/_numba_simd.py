"""Register-blocked small matrix products for Numba kernels, on 64-byte vectors (issue 20).

The chunked exp-kernel / log attention kernel (``_numba_chunked``) multiplies blocks of 16-80 rows and
columns, products too small for OpenBLAS: its Haswell kernels (the ones it picks on AVX2 hosts, and on
some AVX-512 ones) pack every operand first and ran them at 27-43 GFLOP/s on one core of an AVX2 host
whose large float32 matmul runs at ~95 (benchmarks/NOTES.md, s28b). :func:`mm` computes them in place,
no packing: tiles of 8 (``MM_ROWS8``) or 4 rows by one 64-byte vector of columns (16 float32 / 8 float64: two AVX2
registers or one AVX-512 register per row), the accumulators in registers through the reduction.

The vectors are a Numba type (:class:`Vec`, an LLVM ``<16 x float>`` / ``<8 x double>``) with a few
intrinsics on raw addresses (integers: no array views, so no reference counts); LLVM lowers them to
the host's registers, so one code runs on AVX2 and AVX-512 alike.
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: :func:`mm` in tiles of 8 rows by one vector before the 4-row ones (s29c: 16 accumulator registers on AVX2, 8 on
#: AVX-512; the same sums); False: 4-row tiles only (session 28's)
MM_ROWS8 = True

#: :func:`mmt` over 2 x 2 dot products (s29c); False: one dot product at a time (session 28's form, the same sums)
MMT_2X2 = True


class Vec(types.Type):
    """A vector of 64 bytes of float32 or float64 lanes (LLVM vector type)."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = 64 // (dtype.bitwidth // 8)
        super().__init__(name=f"Vec64({dtype})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes))


def _ptr(builder, p, ty):
    return builder.inttoptr(p, ty.as_pointer())


@intrinsic
def vld(typingctx, p, x):
    """the vector of x's dtype at address p (unaligned)"""
    V = Vec(x)

    def codegen(ctx, builder, sig, args):
        vt = ctx.get_value_type(V)
        ld = builder.load(_ptr(builder, args[0], vt), align=x.bitwidth // 8)
        return ld
    return V(p, x), codegen


@intrinsic
def vst(typingctx, p, v):
    def codegen(ctx, builder, sig, args):
        vt = ctx.get_value_type(v)
        builder.store(args[1], _ptr(builder, args[0], vt), align=v.dtype.bitwidth // 8)
        return ctx.get_dummy_value()
    return types.none(p, v), codegen


@intrinsic
def vbc(typingctx, p, x):
    """x's dtype's scalar at address p, in every lane"""
    V = Vec(x)

    def codegen(ctx, builder, sig, args):
        vt = ctx.get_value_type(V)
        s = builder.load(_ptr(builder, args[0], vt.element), align=x.bitwidth // 8)
        u = builder.insert_element(ir.Constant(vt, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(u, u, ir.Constant(ir.VectorType(ir.IntType(32), V.lanes), [0] * V.lanes))
    return V(p, x), codegen


@intrinsic
def vzero(typingctx, x):
    V = Vec(x)

    def codegen(ctx, builder, sig, args):
        vt = ctx.get_value_type(V)
        return ir.Constant(vt, [0.0] * V.lanes)
    return V(x), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a b + c, lane by lane, fused"""
    def codegen(ctx, builder, sig, args):
        vt = ctx.get_value_type(a)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                            f"llvm.fma.v{a.lanes}{'f32' if a.dtype == types.float32 else 'f64'}")
        return builder.call(fn, args)
    return a(a, b, c), codegen


@intrinsic
def sld(typingctx, p, x):
    def codegen(ctx, builder, sig, args):
        return builder.load(_ptr(builder, args[0], ctx.get_value_type(x)), align=x.bitwidth // 8)
    return x(p, x), codegen


@intrinsic
def sst(typingctx, p, v):
    def codegen(ctx, builder, sig, args):
        builder.store(args[1], _ptr(builder, args[0], ctx.get_value_type(v)), align=v.bitwidth // 8)
        return ctx.get_dummy_value()
    return types.none(p, v), codegen


@intrinsic
def isz_lanes(typingctx, x):
    """(itemsize, lanes of a 64-byte vector) of x's dtype"""
    b = x.bitwidth // 8
    tt = types.UniTuple(types.intp, 2)

    def codegen(ctx, builder, sig, args):
        return ctx.make_tuple(builder, tt, [ir.Constant(ir.IntType(64), b), ir.Constant(ir.IntType(64), 64 // b)])
    return tt(x), codegen


@numba.njit(fastmath={"contract"})
def mm(m, n, kk, pa, ra, ca, pb, ldb, pc, ldc, acc, x):
    """c (m x n at pc, row stride ldc) = a b (+ c when acc); a's element (i, l) at pa + (i ra + l ca) isz, b's row l
    at pb + l ldb isz (unit stride along it); strides in elements, addresses as integers; x: a scalar of the blocks'
    dtype (only its type is read: a float64 x on float32 blocks reads them as float64)."""
    isz, VL = isz_lanes(x)
    nv = n - n % VL
    m4 = m - m % 4
    m8 = m - m % 8 if MM_ROWS8 else 0
    for j0 in range(0, nv, VL):
        for i0 in range(0, m8, 8):
            p0 = pc + (i0 * ldc + j0) * isz
            sc = ldc * isz
            if acc:
                c0, c1, c2, c3 = vld(p0, x), vld(p0 + sc, x), vld(p0 + 2 * sc, x), vld(p0 + 3 * sc, x)
                c4, c5, c6, c7 = vld(p0 + 4 * sc, x), vld(p0 + 5 * sc, x), vld(p0 + 6 * sc, x), vld(p0 + 7 * sc, x)
            else:
                c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = vzero(x)
            a = pa + i0 * ra * isz
            b = pb + j0 * isz
            sa = ra * isz
            for _ in range(kk):
                bv = vld(b, x)
                c0 = vfma(vbc(a, x), bv, c0)
                c1 = vfma(vbc(a + sa, x), bv, c1)
                c2 = vfma(vbc(a + 2 * sa, x), bv, c2)
                c3 = vfma(vbc(a + 3 * sa, x), bv, c3)
                c4 = vfma(vbc(a + 4 * sa, x), bv, c4)
                c5 = vfma(vbc(a + 5 * sa, x), bv, c5)
                c6 = vfma(vbc(a + 6 * sa, x), bv, c6)
                c7 = vfma(vbc(a + 7 * sa, x), bv, c7)
                a += ca * isz
                b += ldb * isz
            vst(p0, c0)
            vst(p0 + sc, c1)
            vst(p0 + 2 * sc, c2)
            vst(p0 + 3 * sc, c3)
            vst(p0 + 4 * sc, c4)
            vst(p0 + 5 * sc, c5)
            vst(p0 + 6 * sc, c6)
            vst(p0 + 7 * sc, c7)
        for i0 in range(m8, m4, 4):
            p0 = pc + (i0 * ldc + j0) * isz
            p1 = p0 + ldc * isz
            p2 = p1 + ldc * isz
            p3 = p2 + ldc * isz
            if acc:
                c0, c1, c2, c3 = vld(p0, x), vld(p1, x), vld(p2, x), vld(p3, x)
            else:
                c0 = c1 = c2 = c3 = vzero(x)
            a = pa + i0 * ra * isz
            b = pb + j0 * isz
            sa = ra * isz
            for _ in range(kk):
                bv = vld(b, x)
                c0 = vfma(vbc(a, x), bv, c0)
                c1 = vfma(vbc(a + sa, x), bv, c1)
                c2 = vfma(vbc(a + 2 * sa, x), bv, c2)
                c3 = vfma(vbc(a + 3 * sa, x), bv, c3)
                a += ca * isz
                b += ldb * isz
            vst(p0, c0)
            vst(p1, c1)
            vst(p2, c2)
            vst(p3, c3)
        for i in range(m4, m):
            p0 = pc + (i * ldc + j0) * isz
            c0 = vld(p0, x) if acc else vzero(x)
            a = pa + i * ra * isz
            b = pb + j0 * isz
            for _ in range(kk):
                c0 = vfma(vbc(a, x), vld(b, x), c0)
                a += ca * isz
                b += ldb * isz
            vst(p0, c0)
    for i in range(m):
        for j in range(nv, n):
            pcij = pc + (i * ldc + j) * isz
            s = sld(pcij, x) if acc else x - x
            for l in range(kk):
                s += sld(pa + (i * ra + l * ca) * isz, x) * sld(pb + (l * ldb + j) * isz, x)
            sst(pcij, s)


@intrinsic
def vsum(typingctx, v):
    """the sum of v's lanes, as a tree of halves (a fixed order)"""
    def codegen(ctx, builder, sig, args):
        x = args[0]
        n = v.lanes
        i32 = ir.IntType(32)
        while n > 1:
            n //= 2
            lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, n), list(range(n))))
            hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, n), list(range(n, 2 * n))))
            x = builder.fadd(lo, hi)
        return builder.extract_element(x, ir.Constant(i32, 0))
    return v.dtype(v), codegen


@intrinsic
def vsplat(typingctx, s):
    """s in every lane of a 64-byte vector of its dtype"""
    V = Vec(s)

    def codegen(ctx, builder, sig, args):
        vt = ctx.get_value_type(V)
        u = builder.insert_element(ir.Constant(vt, ir.Undefined), args[0], ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(u, u, ir.Constant(ir.VectorType(ir.IntType(32), V.lanes), [0] * V.lanes))
    return V(s), codegen


@intrinsic
def vmaxo(typingctx, a, b):
    """a where a > b (ordered: False when either is NaN), else b, lane by lane"""
    def codegen(ctx, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])
    return a(a, b), codegen


@intrinsic
def vnanacc(typingctx, c, x):
    """c + (x - x) lane by lane: c stays 0 while every x is finite, NaN from the first NaN or infinite x"""
    def codegen(ctx, builder, sig, args):
        return builder.fadd(args[0], builder.fsub(args[1], args[1]))
    return c(c, x), codegen


@numba.njit(fastmath={"contract"})
def _dot(a, b, kk, x):
    """sum_l a[l] b[l] of kk contiguous elements of x's dtype at addresses a, b: lanes of 64-byte vectors, their
    tree sum (:func:`vsum`), then the kk % lanes last ones"""
    isz, VL = isz_lanes(x)
    acc = vzero(x)
    for _ in range(kk // VL):
        acc = vfma(vld(a, x), vld(b, x), acc)
        a += VL * isz
        b += VL * isz
    r = vsum(acc)
    for _ in range(kk % VL):
        r += sld(a, x) * sld(b, x)
        a += isz
        b += isz
    return r


@numba.njit(fastmath={"contract"})
def mmt(m, n, kk, pa, lda, pb, ldb, pc, ldc, tri, x):
    """c (m x n at pc, row stride ldc) = a b^T, a (m x kk at pa, row stride lda), b (n x kk at pb, ldb), as dot
    products along the rows (vectorised over kk, each as :func:`_dot`: the same sums in the same order), two rows
    of a against two of b at a time when ``MMT_2X2`` (4 loads feed 4 independent FMA chains); only c[t, s] for
    s <= t when ``tri`` (the rest unwritten); x as :func:`mm`'s."""
    isz, VL = isz_lanes(x)
    m2 = m - m % 2 if MMT_2X2 else 0
    for t in range(0, m2, 2):
        ns = min(n, t + 2) if tri else n  # row t + 1 reads columns s < ns, row t those with s <= t too when tri
        ns2 = ns - ns % 2
        a0 = pa + t * lda * isz
        a1 = a0 + lda * isz
        for s in range(0, ns2, 2):
            b0 = pb + s * ldb * isz
            b1 = b0 + ldb * isz
            pa0, pa1, pb0, pb1 = a0, a1, b0, b1
            c00 = c01 = c10 = c11 = vzero(x)
            for _ in range(kk // VL):
                u0, u1, w0, w1 = vld(pa0, x), vld(pa1, x), vld(pb0, x), vld(pb1, x)
                c00 = vfma(u0, w0, c00)
                c01 = vfma(u0, w1, c01)
                c10 = vfma(u1, w0, c10)
                c11 = vfma(u1, w1, c11)
                pa0 += VL * isz
                pa1 += VL * isz
                pb0 += VL * isz
                pb1 += VL * isz
            r00, r01, r10, r11 = vsum(c00), vsum(c01), vsum(c10), vsum(c11)
            for _ in range(kk % VL):
                u0, u1, w0, w1 = sld(pa0, x), sld(pa1, x), sld(pb0, x), sld(pb1, x)
                r00 += u0 * w0
                r01 += u0 * w1
                r10 += u1 * w0
                r11 += u1 * w1
                pa0 += isz
                pa1 += isz
                pb0 += isz
                pb1 += isz
            p0 = pc + (t * ldc + s) * isz
            p1 = p0 + ldc * isz
            sst(p0, r00)
            if not tri or s + 1 <= t:
                sst(p0 + isz, r01)
            sst(p1, r10)
            sst(p1 + isz, r11)
        if ns2 < ns:  # the last column (ns odd: ns = n < t + 2, so s <= t)
            b0 = pb + ns2 * ldb * isz
            sst(pc + (t * ldc + ns2) * isz, _dot(a0, b0, kk, x))
            sst(pc + ((t + 1) * ldc + ns2) * isz, _dot(a1, b0, kk, x))
    for t in range(m2, m):
        for s in range(min(n, t + 1) if tri else n):
            sst(pc + (t * ldc + s) * isz, _dot(pa + t * lda * isz, pb + s * ldb * isz, kk, x))
