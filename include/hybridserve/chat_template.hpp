// Chat prompts for /v1/chat/completions. No Jinja interpreter: the template family is recognised
// from distinctive markers of the model's `chat_template` (tokenizer_config.json) and rendered
// by hand exactly as the reference templates of those families render it.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace hs {

enum class chat_family {
  chatml,  // <|im_start|>role\n...<|im_end|>\n (Qwen, many fine-tunes)
  llama2,  // <s>[INST] <<SYS>>\n...\n<</SYS>>\n\nuser [/INST] answer </s> (Llama 2, Mistral)
  llama3,  // <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  zephyr,  // <|system|>\n...</s>\n<|user|>\n...</s>\n<|assistant|>\n
  plain,   // fallback: "System: ...\n\nUser: ...\n\nAssistant:"
};

const char* chat_family_name(chat_family f);
/// "chatml", "llama2", "llama3", "zephyr", "plain"; nullopt otherwise.
std::optional<chat_family> chat_family_from_name(const std::string& name);
/// The family of a Jinja chat template by its markers; nullopt when none is recognised.
std::optional<chat_family> detect_chat_family(const std::string& jinja);

struct chat_message {
  std::string role;  // system | user | assistant
  std::string content;
};

/// Special-token text the templates use.
struct chat_special {
  std::string bos, eos;
};

/// The prompt text for `messages` followed by the assistant turn's opening (the generation
/// prompt). The text is to be tokenized as is (it carries BOS itself where the family does);
/// for `plain`, the caller encodes as for a completion prompt.
std::string render_chat(chat_family f, const std::vector<chat_message>& messages,
                        const chat_special& sp);

/// Tokens that end an assistant turn besides EOS, as text ("<|im_end|>", "<|eot_id|>").
std::vector<std::string> chat_end_tokens(chat_family f);

/// Which template a server uses, and why (one line for the log).
struct chat_template_choice {
  chat_family family = chat_family::plain;
  chat_special special;
  std::string how;
};

/// Chooses the template: the family detected in tokenizer_config.json's `chat_template` (text of
/// the file, empty when absent; a string or a list of {name, template}) when it is a known one,
/// otherwise `configured` (http.chat_template: chatml | llama2 | llama3 | zephyr), otherwise
/// the plain transcript. BOS/EOS text comes from the file's bos_token/eos_token, else
/// `fallback`. Never fails: a broken file is ignored and said so in `how`.
chat_template_choice choose_chat_template(const std::string& tokenizer_config_text,
                                          const std::string& configured,
                                          const chat_special& fallback);

}  // namespace hs
