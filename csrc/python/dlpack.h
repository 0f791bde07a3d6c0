// The DLPack ABI (v1.x), declared from the specification: the structs a producer hands to a
// consumer in a PyCapsule named "dltensor" (DLManagedTensor) or "dltensor_versioned"
// (DLManagedTensorVersioned); the consumer renames the capsule to "used_dltensor[_versioned]".
#pragma once
#include <cstdint>

extern "C" {

enum AxDLDeviceType : int32_t { kAxDLCPU = 1, kAxDLCUDA = 2, kAxDLCUDAHost = 3, kAxDLCUDAManaged = 13 };
enum AxDLDataTypeCode : uint8_t { kAxDLInt = 0, kAxDLUInt = 1, kAxDLFloat = 2, kAxDLBfloat = 4, kAxDLBool = 6 };

struct AxDLDevice {
  int32_t device_type;
  int32_t device_id;
};
struct AxDLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct AxDLTensor {
  void* data;
  AxDLDevice device;
  int32_t ndim;
  AxDLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; NULL means compact row-major
  uint64_t byte_offset;
};
struct AxDLManagedTensor {
  AxDLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(AxDLManagedTensor* self);
};
struct AxDLPackVersion {
  uint32_t major;
  uint32_t minor;
};
struct AxDLManagedTensorVersioned {
  AxDLPackVersion version;
  void* manager_ctx;
  void (*deleter)(AxDLManagedTensorVersioned* self);
  uint64_t flags;  // bit 0: read only, bit 1: is a copy
  AxDLTensor dl_tensor;
};

}  // extern "C"
