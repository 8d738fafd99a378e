// Chat templates: turns a conversation into the prompt text a model was
// tuned on. Model files store the template as Jinja source; rather than
// embed a Jinja interpreter, the template's family is recognised from its
// text and rendered natively, reproducing what the Jinja renders:
//   ChatML (SmolLM2, Qwen):  <|im_start|>role\ncontent<|im_end|>\n, with the
//                            default system message the template inserts
//                            when the conversation has none
//   Llama 3:                 <|start_header_id|>role<|end_header_id|>\n\n
//                            content (trimmed)<|eot_id|>, bos first
//   Llama 2:                 <s>[INST] <<SYS>>...<</SYS>> user [/INST] reply </s>
// A template of another family is an elastic::Error that suggests giving
// the prompt as raw text instead.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "elastic/core/error.hpp"

namespace elastic::io {

enum class ChatTemplateFamily : std::uint8_t { chatml, llama3, llama2 };

inline std::string_view family_name(ChatTemplateFamily family) {
  switch (family) {
    case ChatTemplateFamily::chatml: return "ChatML";
    case ChatTemplateFamily::llama3: return "Llama 3";
    case ChatTemplateFamily::llama2: return "Llama 2";
  }
  return "unknown";
}

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

class ChatTemplate {
 public:
  // Recognises the family of `template_text` (the Jinja source a model file
  // stores). bos_token / eos_token are the texts the template writes for
  // bos_token / eos_token (Llama 2 and 3 use them).
  static ChatTemplate from_text(std::string_view template_text, std::string bos_token = {},
                                std::string eos_token = {}) {
    ChatTemplate chat(recognise(template_text), std::move(bos_token), std::move(eos_token));
    if (chat.family_ == ChatTemplateFamily::chatml) chat.default_system_ = chatml_default_system(template_text);
    return chat;
  }

  ChatTemplateFamily family() const { return family_; }

  // The prompt for `messages`; add_generation_prompt opens the assistant's
  // turn (the Llama 2 template has no such turn header and ignores it).
  std::string apply(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    switch (family_) {
      case ChatTemplateFamily::chatml: return apply_chatml(messages, add_generation_prompt);
      case ChatTemplateFamily::llama3: return apply_llama3(messages, add_generation_prompt);
      case ChatTemplateFamily::llama2: return apply_llama2(messages);
    }
    return {};
  }

 private:
  ChatTemplate(ChatTemplateFamily family, std::string bos, std::string eos)
      : family_(family), bos_(std::move(bos)), eos_(std::move(eos)) {}

  static bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

  static ChatTemplateFamily recognise(std::string_view text) {
    require(!text.empty(), "the model has no chat template; give the prompt as raw text");
    if (contains(text, "<|start_header_id|>")) {
      require(!contains(text, "Cutting Knowledge Date"),
              "the Llama 3.1+ chat template (tools, knowledge-date system header) is not supported; "
              "give the prompt as raw text");
      return ChatTemplateFamily::llama3;
    }
    if (contains(text, "<|im_start|>")) return ChatTemplateFamily::chatml;
    if (contains(text, "[INST]")) return ChatTemplateFamily::llama2;
    throw Error(elastic::detail::concat("unrecognised chat template (supported: ChatML, Llama 3, Llama 2); ",
                               "give the prompt as raw text. The template starts: ", text.substr(0, 120)));
  }

  // The system message a ChatML template writes when the conversation has
  // none: the literal text after "<|im_start|>system\n" up to "<|im_end|>",
  // in a template that checks whether the first message is a system one.
  static std::string chatml_default_system(std::string_view text) {
    if (!contains(text, "!= 'system'") && !contains(text, "!= \"system\"") && !contains(text, "else")) return {};
    constexpr std::string_view header = "<|im_start|>system";
    for (std::size_t at = text.find(header); at != std::string_view::npos; at = text.find(header, at + 1)) {
      std::size_t begin = at + header.size();
      if (text.substr(begin, 1) == "\n") {
        begin += 1;
      } else if (text.substr(begin, 2) == "\\n") {
        begin += 2;
      } else {
        continue;
      }
      const std::size_t end = text.find("<|im_end|>", begin);
      if (end == std::string_view::npos) return {};
      const std::string_view literal = text.substr(begin, end - begin);
      if (literal.empty() || literal.find_first_of("'\"{}") != std::string_view::npos) continue;
      return unescape_newlines(literal);
    }
    return {};
  }

  static std::string unescape_newlines(std::string_view literal) {
    std::string out;
    for (std::size_t i = 0; i < literal.size(); ++i) {
      if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'n') {
        out += '\n';
        ++i;
      } else {
        out += literal[i];
      }
    }
    return out;
  }

  // Jinja's trim / Python's strip() for the whitespace ASCII knows.
  static std::string_view trim(std::string_view text) {
    constexpr std::string_view space = " \t\n\r\f\v";
    const std::size_t begin = text.find_first_not_of(space);
    if (begin == std::string_view::npos) return {};
    return text.substr(begin, text.find_last_not_of(space) - begin + 1);
  }

  std::string apply_chatml(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    std::string prompt;
    const auto turn = [&](std::string_view role, std::string_view content) {
      prompt.append("<|im_start|>").append(role).append("\n").append(content).append("<|im_end|>\n");
    };
    if (!messages.empty() && messages.front().role != "system" && !default_system_.empty())
      turn("system", default_system_);
    for (const ChatMessage& message : messages) turn(message.role, message.content);
    if (add_generation_prompt) prompt += "<|im_start|>assistant\n";
    return prompt;
  }

  std::string apply_llama3(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
    std::string prompt = messages.empty() ? std::string() : bos_;
    for (const ChatMessage& message : messages)
      prompt.append("<|start_header_id|>").append(message.role).append("<|end_header_id|>\n\n")
          .append(trim(message.content)).append("<|eot_id|>");
    if (add_generation_prompt) prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return prompt;
  }

  std::string apply_llama2(std::span<const ChatMessage> messages) const {
    require(!messages.empty(), "Llama 2 chat: the conversation is empty (the template reads messages[0])");
    const bool has_system = messages.front().role == "system";
    const std::string system = has_system ? messages.front().content : std::string();
    if (has_system) messages = messages.subspan(1);
    std::string prompt;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const ChatMessage& message = messages[i];
      require((message.role == "user") == (i % 2 == 0),
              "Llama 2 chat: conversation roles must alternate user/assistant/user/assistant/...; message ", i,
              " is '", message.role, "'");
      const std::string content =
          i == 0 && has_system ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + message.content : message.content;
      if (message.role == "user") {
        prompt.append(bos_).append("[INST] ").append(trim(content)).append(" [/INST]");
      } else if (message.role == "assistant") {
        prompt.append(" ").append(trim(content)).append(" ").append(eos_);
      }
    }
    return prompt;
  }

  ChatTemplateFamily family_;
  std::string bos_;
  std::string eos_;
  std::string default_system_;  // ChatML: written when the conversation has no system message
};

}  // namespace elastic::io
