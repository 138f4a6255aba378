"""RequestTokens: each rendered message is tokenized once per tokenizer; a request
asks the tokenizer only for the messages it has not seen."""

from __future__ import annotations

from openclaw_daemon.upstream.request_tokens import MAX_MESSAGES, RequestTokens, request_text
from openclaw_daemon.upstream.tokens import EstimateTokenizer


class CountingTokenizer:
    source, estimate = "estimate:cl100k_base", True

    def __init__(self) -> None:
        self.inner = EstimateTokenizer()
        self.asked: list[str] = []

    def tokenize(self, text: str) -> list[int]:
        if text:  # "" is the one probe of what it puts before every text
            self.asked.append(text)
        return self.inner.tokenize(text)

    def detokenize(self, tokens: list[int]) -> str:
        return self.inner.detokenize(tokens)


def _turns(n: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(n):
        messages.append({"role": "user", "content": f"question {i}"})
        messages.append({"role": "assistant", "content": f"answer {i}"})
    return messages


def test_a_follow_up_tokenizes_only_its_new_messages() -> None:
    tokenizer, cache = CountingTokenizer(), RequestTokens()
    first = _turns(2)
    assert cache.tokenize(tokenizer, first) == tokenizer.inner.tokenize(request_text(first))
    assert len(tokenizer.asked) == 5
    tokenizer.asked.clear()
    second = [*first, {"role": "user", "content": "and now?"}]
    assert cache.tokenize(tokenizer, second) == tokenizer.inner.tokenize(request_text(second))
    assert tokenizer.asked == ["<|im_start|>user\nand now?<|im_end|>\n"]


def test_each_tokenizer_has_its_own_ids_and_the_cache_is_bounded() -> None:
    cache, one, two = RequestTokens(), CountingTokenizer(), CountingTokenizer()
    cache.tokenize(one, _turns(1))
    cache.tokenize(two, _turns(1))
    assert len(one.asked) == len(two.asked) == 3  # another model's ids are not reused
    many = [{"role": "user", "content": f"m{i}"} for i in range(MAX_MESSAGES + 10)]
    cache.tokenize(one, many)
    one.asked.clear()
    cache.tokenize(one, many[:1])  # the oldest went first
    assert one.asked == ["<|im_start|>user\nm0<|im_end|>\n"]


class BosTokenizer(CountingTokenizer):
    """As llama-cpp-python's /extras/tokenize: the model's BOS before every text."""

    BOS = 100257

    def tokenize(self, text: str) -> list[int]:
        return [self.BOS, *super().tokenize(text)]


def test_a_bos_put_before_every_text_is_counted_once() -> None:
    tokenizer, messages = BosTokenizer(), _turns(2)
    ids = RequestTokens().tokenize(tokenizer, messages)
    assert ids == tokenizer.tokenize(request_text(messages))  # the whole request's ids
    assert ids.count(BosTokenizer.BOS) == 1
