// IEEE binary16 and bfloat16 <-> float32 conversions (CPU side).
#pragma once
#include <cstddef>
#include <cstdint>

namespace hs {

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to inf
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);  // round to nearest even, NaN stays NaN

}  // namespace hs
