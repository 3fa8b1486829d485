"""Golden numbers for the data pipeline tests (src/data/tests*.rs), computed independently of the
Rust code with tiktoken's GPT-2 BPE (`encode_ordinary`, the tokenizer fineweb.py, llm.c and
modded-nanogpt use).

Run from the repo root:  .venv/bin/python scripts/data_reference.py

tiktoken normally downloads the GPT-2 files; to stay offline the mergeable ranks are rebuilt from
data/gpt2/tokenizer.json (its vocab maps GPT-2 byte-level unicode strings to ranks; inverting the
byte<->unicode table gives tiktoken's bytes -> rank map, the same table tiktoken's gpt2 uses).
"""
import hashlib
import json
import struct

import tiktoken

EOT = 50256
# GPT-2's regex, as in tiktoken_ext/openai_public.py (gpt2).
PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def gpt2():
    tj = json.load(open("data/gpt2/tokenizer.json", encoding="utf-8"))
    dec = {u: b for b, u in bytes_to_unicode().items()}
    ranks = {bytes(dec[c] for c in tok): i for tok, i in tj["model"]["vocab"].items()}
    assert len(ranks) == 50257 - 1 or len(ranks) == 50257
    ranks = {k: v for k, v in ranks.items() if v != EOT}
    return tiktoken.Encoding("gpt2-offline", pat_str=PAT, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": EOT})


def shard(tokens):
    header = [0] * 256
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    return struct.pack("<256i", *header) + struct.pack(f"<{len(tokens)}H", *tokens)


def main():
    enc = gpt2()
    assert enc.encode_ordinary("Hello world") == [15496, 995]

    # 1. A literal "<|endoftext|>" inside a document is plain text for encode_ordinary.
    s = "a<|endoftext|>b"
    print("literal:", repr(s), enc.encode_ordinary(s))

    # 2. The 42-document gutenberg file: split on the separator, strip, EOT before each.
    text = open("data/corpus/shakespeare_gutenberg_42.txt", encoding="utf-8").read()
    docs = [d.strip() for d in text.split("<|endoftext|>")]
    docs = [d for d in docs if d]
    n = sum(1 + len(enc.encode_ordinary(d)) for d in docs)
    print("gutenberg_42: documents", len(docs), "tokens", n)

    # 3. llm.c tinyshakespeare recipe -> sha256 of both shards (must equal the shipped goldens).
    text = open("data/corpus/tinyshakespeare.txt", encoding="utf-8").read()
    sections = text.split("\n\n")
    toks = []
    for i, s in enumerate(sections):
        toks.append(EOT)
        toks.extend(enc.encode_ordinary(s + "\n\n" if i != len(sections) - 1 else s))
    val, train = toks[:32768], toks[32768:]
    print("tinyshakespeare: val", len(val), hashlib.sha256(shard(val)).hexdigest())
    print("tinyshakespeare: train", len(train), hashlib.sha256(shard(train)).hexdigest())

    # 4. The jsonl/gzip fixture of src/data/tests/tokenize.rs: two documents, "text" taken verbatim.
    docs = ["Hello world", " The end.\n"]
    print("jsonl:", [t for d in docs for t in [EOT] + enc.encode_ordinary(d)])

    # 5. The fetch_tinystories fixture of src/data/tests/fetch.rs: the valid file's two stories.
    print("tinystories fixture val:", [t for d in ["One day.", "The end."] for t in [EOT] + enc.encode_ordinary(d)])

    # 6. Shipped data/tinystories: documents = blank-line-separated blocks, stripped, EOT before
    #    each; val = the first 10% of tokens (rounded), train = the rest.
    text = open("data/corpus/tinystories_valid_head.txt", encoding="utf-8").read()
    docs = [d.strip() for d in text.split("\n\n")]
    docs = [d for d in docs if d]
    toks = []
    for d in docs:
        toks.append(EOT)
        toks.extend(enc.encode_ordinary(d))
    nval = round(len(toks) * 0.1)
    print("tinystories: documents", len(docs), "tokens", len(toks), "val", nval)
    print("tinystories: val sha256", hashlib.sha256(shard(toks[:nval])).hexdigest())
    print("tinystories: train sha256", hashlib.sha256(shard(toks[nval:])).hexdigest())


if __name__ == "__main__":
    main()
