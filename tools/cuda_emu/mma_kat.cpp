// Driver for the known-answer tests of the emulated tensor-core instructions
// (tests/test_mma_layouts.py builds it with g++ against emu.cpp and feeds it data; the expected
// answers live in the test, transcribed from the PTX ISA, not here). It runs one warp through
// csrc/cuda/mma.cuh exactly as a kernel would and prints every lane's registers.
//   mma_kat mma_tf32 | mma_bf16   stdin: 32 lines "a0 a1 a2 a3 b0 b1 c0 c1 c2 c3" (hex bits)
//                                 stdout: 32 lines "d0 d1 d2 d3" (hex fp32 bits)
//   mma_kat ldmatrix N T          N in {1,2,4}, T in {0,1} (.trans); stdin: 512 hex b16 words
//                                 (1 KiB of shared memory), then 32 byte offsets (one per lane)
//                                 stdout: 32 lines of N hex registers
//   mma_kat mma_partial           lane 31 skips the mma: must abort with a message
//   mma_kat gemm_bf16             stdin: A 16x16 then B 16x8 as bf16 words, row-major; stdout:
//                                 64 lines "d0 d1 d2 d3": B via ldmatrix .trans, then via Bt
//   mma_kat gemm_tf32             stdin: A 16x8 then B 8x8 as fp32 bits, row-major; stdout: D
//   mma_kat mixed                 half the warp at ldmatrix, half at mma: must abort
//   mma_kat cvt                   stdin: hex fp32 bits, one per line; stdout per input:
//                                 "to_tf32 pack_bf16x2(x,0) pack_bf16x2(0,x) float_to_bf16_bits"
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/mma.cuh"

using namespace alexnet_ext::cuda;

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "mma_kat: %s failed: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

std::vector<void*> allocations;  // freed at exit (LeakSanitizer runs)

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  allocations.push_back(p);
  return p;
}

template <class T>
T* to_device(const std::vector<T>& h) {
  void* p = device_alloc(h.size() * sizeof(T));
  check(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  return static_cast<T*>(p);
}

template <class T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  check(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return h;
}

std::vector<uint32_t> read_hex(size_t n) {
  std::vector<uint32_t> v;
  unsigned x;
  while ((n == 0 || v.size() < n) && std::scanf("%x", &x) == 1) v.push_back(x);
  if (n != 0 && v.size() != n) {
    std::fprintf(stderr, "mma_kat: expected %zu hex words on stdin, got %zu\n", n, v.size());
    std::exit(2);
  }
  return v;
}

// in: 32 x 10 words per lane; out: 32 x 4.
template <bool kBf16>
__global__ void mma_kernel(const uint32_t* in, uint32_t* out) {
  const uint32_t* p = in + 10 * threadIdx.x;
  const uint32_t a[4] = {p[0], p[1], p[2], p[3]}, b[2] = {p[4], p[5]};
  float c[4], d[4];
  for (int i = 0; i < 4; ++i) c[i] = __uint_as_float(p[6 + i]);
  if (kBf16)
    mma_m16n8k16_bf16(d, a, b, c);
  else
    mma_m16n8k8_tf32(d, a, b, c);
  for (int i = 0; i < 4; ++i) out[4 * threadIdx.x + i] = __float_as_uint(d[i]);
}

// smem_image: 512 b16 words; offsets: 32 byte offsets into it.
__global__ void ldmatrix_kernel(const uint16_t* smem_image, const uint32_t* offsets, int n,
                                int trans, uint32_t* out) {
  __shared__ __align__(16) uint16_t smem[512];
  for (int i = threadIdx.x; i < 512; i += 32) smem[i] = smem_image[i];
  __syncthreads();
  const void* row = reinterpret_cast<const char*>(smem) + offsets[threadIdx.x];
  uint32_t r[4] = {0, 0, 0, 0};
  if (n == 1 && !trans) ldmatrix_x1(r, row);
  if (n == 2 && !trans) ldmatrix_x2(r, row);
  if (n == 4 && !trans) ldmatrix_x4(r, row);
  if (n == 1 && trans) ldmatrix_x1_trans(r, row);
  if (n == 2 && trans) ldmatrix_x2_trans(r, row);
  if (n == 4 && trans) ldmatrix_x4_trans(r, row);
  for (int j = 0; j < n; ++j) out[n * threadIdx.x + j] = r[j];
}

// A 16x16 (row-major) times B 16x8 through shared memory, the way a kernel feeds the mma:
// A by ldmatrix_x4 (lane l: row l % 16, column block l / 16), B twice: stored k-major B[k][n]
// through ldmatrix_x2_trans (lane l: row k = l), and stored n-major Bt[n][k] through
// ldmatrix_x2 (lane l: row n = l % 8, column block l / 8). out: 2 x 32 x 4.
__global__ void gemm_bf16_kernel(const uint16_t* a, const uint16_t* b, uint32_t* out) {
  __shared__ __align__(16) uint16_t sa[16 * 16], sb[16 * 8], sbt[8 * 16];
  for (int i = threadIdx.x; i < 256; i += 32) sa[i] = a[i];
  for (int i = threadIdx.x; i < 128; i += 32) {
    sb[i] = b[i];
    sbt[(i % 8) * 16 + i / 8] = b[i];  // transpose: Bt[n][k] = B[k][n]
  }
  __syncthreads();
  const int l = threadIdx.x;
  uint32_t fa[4], fb[2], fbt[2];
  ldmatrix_x4(fa, &sa[(l % 16) * 16 + (l / 16) * 8]);
  ldmatrix_x2_trans(fb, &sb[(l % 16) * 8]);
  ldmatrix_x2(fbt, &sbt[(l % 8) * 16 + ((l / 8) % 2) * 8]);
  const float c[4] = {0, 0, 0, 0};
  float d[4], e[4];
  mma_m16n8k16_bf16(d, fa, fb, c);
  mma_m16n8k16_bf16(e, fa, fbt, c);
  for (int i = 0; i < 4; ++i) {
    out[4 * l + i] = __float_as_uint(d[i]);
    out[128 + 4 * l + i] = __float_as_uint(e[i]);
  }
}

// tf32 through ldmatrix (32-bit elements as b16 pairs): A 16x8 fp32 row-major by ldmatrix_x4
// (four 8x4-fp32 blocks; lane l: row l % 16, k block l / 16), B stored n-major Bt[n][k] by
// ldmatrix_x2 (lane l: row n = l % 8, k block l / 8). Each lane's register is then exactly the
// mma.m16n8k8 .tf32 fragment element. in: A (128 words) then B 8x8 k-major (64); out: 32 x 4.
__global__ void gemm_tf32_kernel(const uint32_t* a, const uint32_t* b, uint32_t* out) {
  __shared__ __align__(16) uint32_t sa[16 * 8], sbt[8 * 8];
  for (int i = threadIdx.x; i < 128; i += 32) sa[i] = a[i];
  for (int i = threadIdx.x; i < 64; i += 32) sbt[(i % 8) * 8 + i / 8] = b[i];  // Bt[n][k] = B[k][n]
  __syncthreads();
  const int l = threadIdx.x;
  uint32_t fa[4], fb[2];
  ldmatrix_x4(fa, &sa[(l % 16) * 8 + (l / 16) * 4]);
  ldmatrix_x2(fb, &sbt[(l % 8) * 8 + ((l / 8) % 2) * 4]);
  const float c[4] = {0, 0, 0, 0};
  float d[4];
  mma_m16n8k8_tf32(d, fa, fb, c);
  for (int i = 0; i < 4; ++i) out[4 * l + i] = __float_as_uint(d[i]);
}

// Lane 31 exits before the mma: the emulator must abort (a GPU would hang or be undefined).
__global__ void partial_kernel(uint32_t* out) {
  if (threadIdx.x == 31) return;
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  const float c[4] = {0, 0, 0, 0};
  float d[4];
  mma_m16n8k8_tf32(d, a, b, c);
  out[threadIdx.x] = __float_as_uint(d[0]);
}

// Half the warp at an ldmatrix, half at an mma: the emulator must abort.
__global__ void mixed_kernel(uint32_t* out) {
  __shared__ __align__(16) uint16_t smem[256];
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  const float c[4] = {0, 0, 0, 0};
  float d[4] = {0, 0, 0, 0};
  uint32_t r[4] = {0, 0, 0, 0};
  if (threadIdx.x < 16)
    ldmatrix_x4(r, &smem[8 * threadIdx.x]);
  else
    mma_m16n8k8_tf32(d, a, b, c);
  out[threadIdx.x] = r[0] + __float_as_uint(d[0]);
}

// Conversions, 4 results per input.
__global__ void cvt_kernel(const uint32_t* in, int count, uint32_t* out) {
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const float x = __uint_as_float(in[i]);
    out[4 * i + 0] = to_tf32(x);
    out[4 * i + 1] = pack_bf16x2(x, 0.f);
    out[4 * i + 2] = pack_bf16x2(0.f, x);
    out[4 * i + 3] = float_to_bf16_bits(x);
  }
}

void print_rows(const std::vector<uint32_t>& v, int per_row) {
  for (size_t i = 0; i < v.size(); ++i)
    std::printf("%08x%c", v[i], (i + 1) % per_row == 0 ? '\n' : ' ');
}

// Launches `kernel` on one warp with args... and a fresh output of `words` words, then prints the
// output `per_row` words a line (per_row 0: only that no fault aborted the run).
template <class... Params, class... Args>
void run_warp(void (*kernel)(Params...), size_t words, int per_row, Args... args) {
  auto* out = static_cast<uint32_t*>(device_alloc(words * 4));
  launch(kernel, dim3(1), dim3(32), nullptr, args..., out);
  check(cudaDeviceSynchronize(), "kernel");
  if (per_row)
    print_rows(to_host(out, words), per_row);
  else
    std::printf("no abort\n");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "mma_tf32" || cmd == "mma_bf16") {
    const uint32_t* in = to_device(read_hex(320));
    run_warp(cmd == "mma_bf16" ? mma_kernel<true> : mma_kernel<false>, 128, 4, in);
  } else if (cmd == "mma_partial") {
    run_warp(partial_kernel, 32, 0);
  } else if (cmd == "gemm_bf16") {
    const std::vector<uint32_t> words = read_hex(384);
    const std::vector<uint16_t> a(words.begin(), words.begin() + 256), b(words.begin() + 256, words.end());
    run_warp(gemm_bf16_kernel, 256, 4, to_device(a), to_device(b));
  } else if (cmd == "gemm_tf32") {
    const std::vector<uint32_t> words = read_hex(192);
    const std::vector<uint32_t> a(words.begin(), words.begin() + 128), b(words.begin() + 128, words.end());
    run_warp(gemm_tf32_kernel, 128, 4, to_device(a), to_device(b));
  } else if (cmd == "mixed") {
    run_warp(mixed_kernel, 32, 0);
  } else if (cmd == "ldmatrix" && argc == 4) {
    const int n = std::atoi(argv[2]), trans = std::atoi(argv[3]);
    if (!(n == 1 || n == 2 || n == 4)) {
      std::fprintf(stderr, "mma_kat: ldmatrix N in {1,2,4}\n");
      return 2;
    }
    const std::vector<uint32_t> words = read_hex(512);
    const std::vector<uint16_t> image(words.begin(), words.end());
    const std::vector<uint32_t> offsets = read_hex(32);
    run_warp(ldmatrix_kernel, 32 * n, n, to_device(image), to_device(offsets), n, trans);
  } else if (cmd == "cvt") {
    const std::vector<uint32_t> words = read_hex(0);
    const int count = static_cast<int>(words.size());
    if (count == 0) return 0;
    run_warp(cvt_kernel, 4 * words.size(), 4, to_device(words), count);
  } else {
    std::fprintf(stderr, "usage: mma_kat mma_tf32|mma_bf16|cvt|ldmatrix N T  (data on stdin)\n");
    return 2;
  }
  for (void* p : allocations) check(cudaFree(p), "cudaFree");
  return 0;
}
