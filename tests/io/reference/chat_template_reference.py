"""Reference for the chat templates: renders conversations with jinja2 the way
transformers does (sandboxed, trim_blocks, lstrip_blocks, raise_exception).

Usage: chat_template_reference.py GGUF

Templates: the default model's own (read from the GGUF), Llama 3's and
Llama 2's (as their tokenizer_config.json files publish them). Prints
{"cases": [{"template", "bos", "eos", "messages", "add_generation_prompt",
"rendered"}]} where rendered is null when the template raises.
"""
import json
import sys

import gguf
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

CONVERSATIONS = [
    [],
    [{"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "  padded question \n"}, {"role": "assistant", "content": " 4 "},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "empty system"}],
    [{"role": "user", "content": "multi\nline\n\ncontent with <tags> and émoji 🎉"},
     {"role": "assistant", "content": "ok"}],
    [{"role": "assistant", "content": "I start"}, {"role": "user", "content": "odd order"}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
]


def gguf_string(reader, name):
    entry = reader.fields[name]
    return bytes(entry.parts[entry.data[0]]).decode("utf-8")


def raise_exception(message):
    raise TemplateError(message)


def main():
    reader = gguf.GGUFReader(sys.argv[1])
    templates = [(gguf_string(reader, "tokenizer.chat_template"), "<|im_start|>", "<|im_end|>"),
                 (LLAMA3, "<|begin_of_text|>", "<|eot_id|>"), (LLAMA2, "<s>", "</s>")]
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    cases = []
    for source, bos, eos in templates:
        compiled = environment.from_string(source)
        for messages in CONVERSATIONS:
            for add_generation_prompt in (False, True):
                try:
                    rendered = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                               bos_token=bos, eos_token=eos)
                except TemplateError:
                    rendered = None
                cases.append({"template": source, "bos": bos, "eos": eos, "messages": messages,
                              "add_generation_prompt": add_generation_prompt, "rendered": rendered})
    print(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
