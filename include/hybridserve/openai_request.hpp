// OpenAI request bodies -> generation requests, and errors in the OpenAI shape. Pure functions
// (no sockets, no actors) used by the HTTP front end.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hybridserve/chat_template.hpp"
#include "hybridserve/generate.hpp"
#include "hybridserve/model.hpp"

namespace hs::openai {

/// An error as the OpenAI API reports it: HTTP status and {"error": {message, type, param, code}}.
struct api_error {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string code = "invalid_value";
  std::string param;  // empty: null
  int retry_after_s = 0;
};

api_error bad_param(const std::string& param, const std::string& message,
                    const std::string& code = "invalid_value");
nlohmann::json error_json(const api_error& e);
/// The engine's words for a refused or failed request, as an HTTP error.
api_error engine_error(const std::string& why, int retry_after_s);

/// What parsing needs from the server: limits and the chat template in force.
struct openai_context {
  int max_tokens_default = 128;
  int max_tokens_limit = 4096;
  const chat_template_choice& chat;
  const std::vector<int32_t>& chat_end_ids;
};

/// A parsed request body.
struct gen_params {
  bool chat = false;
  generation_request req;
  bool stream = false, include_usage = false;
  std::vector<std::string> stop;
};

/// Sampling, stream and stop fields shared by both endpoints.
std::optional<api_error> parse_common(const openai_context& s, const nlohmann::json& b,
                                      gen_params& p);
/// POST /v1/completions: prompt (text, one-element array or token ids) and max_tokens.
std::optional<api_error> parse_completion(const openai_context& s, const model& m,
                                          const nlohmann::json& b, gen_params& p);
/// POST /v1/chat/completions: messages rendered with the chat template, and max_tokens.
std::optional<api_error> parse_chat(const openai_context& s, const model& m,
                                    const nlohmann::json& b, gen_params& p);

}  // namespace hs::openai
