// Why the engine refused or ended a request, from its message: the one mapping every front end
// turns into its own wire codes (TCP error codes, HTTP statuses).
#pragma once
#include <string>

namespace hs {

enum class refusal { context_overflow, overloaded, draining, bad_request, internal };

/// Classifies the human message of a failed request (generation_request::check, request
/// intake, the accountant).
inline refusal classify_refusal(const std::string& why) {
  auto starts = [&](const char* p) { return why.rfind(p, 0) == 0; };
  if (starts("context overflow")) return refusal::context_overflow;
  if (starts("overloaded") || starts("cache full")) return refusal::overloaded;
  if (starts("the server is draining")) return refusal::draining;
  if (why.find("out of range") != std::string::npos || starts("prompt is empty") ||
      why.find("must be") != std::string::npos)
    return refusal::bad_request;
  return refusal::internal;
}

}  // namespace hs
