// What a greedy request gives when it runs alone on the reference path: the expectation of the
// serving tests, computed independently of the engine under test.
#pragma once
#include <memory>
#include <vector>

#include "hybridserve/generate.hpp"

namespace hs::test {

inline std::vector<int32_t> greedy_alone(const model& m, const std::vector<int32_t>& prompt,
                                         int n) {
  reference_forward f(std::shared_ptr<const model>(&m, [](const model*) {}));
  generation_request r;
  r.prompt = prompt;
  r.max_tokens = n;
  r.sampling.temperature = 0;
  return generate_reference(f, {r})[0].tokens;
}

}  // namespace hs::test
