"""XMC-GAN: vocabulary, text encoders, feature bank, word attention, G/D, the term, and the CLI end to end."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from cgantool.errors import CgantoolError, ConfigError, OfflineError
from cgantool.nets.xmcgan import XMCDiscriminator, XMCGenerator, word_attention
from cgantool.text import TextCond, Vocab, tokenize
from cgantool.text.encoders import BuiltinText, GRUTextNet
from tests.conftest import invoke

XMC_TINY = [
    "--set", "model.g_channels=4", "--set", "model.d_channels=4", "--set", "data.num_images=128",
    "--set", "text.dim=32", "--set", "text.pretrain_steps=30", "--set", "train.log_every=2",
    "--set", "train.sample_every=4", "--set", "train.checkpoint_every=4", "--set", "train.ema_decay=0.5",
]


def _cond(B=3, T=5, D=16, lengths=(2, 5, 3), seed=0) -> TextCond:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    return TextCond(torch.randn(B, D, generator=g), torch.randn(B, T, D, generator=g), mask)


# ------------------------------------------------------------------------------------ vocabulary


def test_tokenize_and_encode_lengths():
    assert tokenize("A small, RED circle!") == ["a", "small", "red", "circle"]
    vocab = Vocab.build(["a red circle", "a blue square in the center"])
    ids, lengths = vocab.encode(["a red circle", "blue square"], max_words=17)
    assert ids.shape == (2, 3) and lengths.tolist() == [3, 2]
    assert ids[1, 2] == 0  # padding
    assert [vocab.words[i] for i in ids[0]] == ["a", "red", "circle"]
    ids, lengths = vocab.encode(["a blue square in the center"], max_words=4)
    assert lengths.tolist() == [4]


def test_unknown_words_policies():
    vocab = Vocab.build(["a red circle"])
    with pytest.raises(CgantoolError, match="'purple'") as e:
        vocab.encode(["a purple circle"], 17)
    assert "red" in e.value.hint
    ids, lengths = vocab.encode(["a purple circle"], 17, unknown="ignore")
    assert [vocab.words[i] for i in ids[0, : lengths[0]]] == ["a", "circle"]
    ids, _ = vocab.encode(["a purple circle"], 17, unknown="unk")
    assert vocab.words[ids[0, 1]] == "<unk>"
    with pytest.raises(CgantoolError, match="no word"):
        vocab.encode(["purple"], 17, unknown="ignore")


def test_gru_encoder_masks_and_ignores_padding():
    torch.manual_seed(0)
    net = GRUTextNet(10, dim=8).eval()
    ids = torch.tensor([[2, 3, 4, 0], [5, 6, 0, 0]])
    out = net(ids, torch.tensor([3, 2]))
    assert out.words.shape == (2, 4, 8) and out.sentence.shape == (2, 8)
    assert out.mask.tolist() == [[True, True, True, False], [True, True, False, False]]
    assert torch.all(out.words[1, 2:] == 0)
    alone = net(ids[1:, :2], torch.tensor([2]))  # the same caption without padding
    torch.testing.assert_close(alone.sentence, out.sentence[1:])
    with pytest.raises(ConfigError):
        GRUTextNet(10, dim=7)


# ------------------------------------------------------------------------------------ G and D


def test_word_attention_ignores_padded_words_and_matches_a_loop():
    torch.manual_seed(0)
    c = _cond(B=2, T=4, D=6, lengths=(2, 4))
    h = torch.randn(2, 6, 3, 3)
    out = word_attention(h, c.words, c.mask, gamma=15.0)
    changed = c.words.clone()
    changed[0, 2:] = 100 * torch.randn(2, 6)  # padded words of caption 0
    torch.testing.assert_close(word_attention(h, changed, c.mask), out)
    # loop: region j of image b attends over the real words of caption b
    for b in range(2):
        L = int(c.mask[b].sum())
        w = F.normalize(c.words[b, :L], dim=-1)
        for j in range(9):
            hj = h[b, :, j // 3, j % 3]
            a = torch.softmax(15.0 * F.cosine_similarity(hj[None], w, dim=-1), dim=0)
            torch.testing.assert_close(out[b, :, j // 3, j % 3], (a[:, None] * w).sum(0), atol=1e-5, rtol=1e-5)


def test_spatial_cbn_equals_modulating_with_the_upsampled_map():
    """SpatialCBN convolves S at its own size and upsamples gain/bias: the same as upsampling S first."""
    from cgantool.nets.xmcgan import SpatialCBN

    torch.manual_seed(0)
    norm = SpatialCBN(6, 10).train()
    x, s = torch.randn(4, 6, 16, 16), torch.randn(4, 10, 8, 8)
    s_up = F.interpolate(s, size=(16, 16), mode="nearest")
    expected = F.batch_norm(x, None, None, training=True) * (1 + norm.gain(s_up)) + norm.bias(s_up)
    torch.testing.assert_close(norm(x, s), expected, atol=1e-5, rtol=1e-5)
    same = torch.randn(4, 10, 16, 16)  # S already at x's size: no upsampling
    expected = F.batch_norm(x, None, None, training=True) * (1 + norm.gain(same)) + norm.bias(same)
    torch.testing.assert_close(norm(x, same), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("res,regions", [(16, 64), (32, 256)])
def test_generator_and_discriminator_shapes(res, regions):
    torch.manual_seed(0)
    G, D = XMCGenerator(res, channels=4, text_dim=16), XMCDiscriminator(res, channels=4, text_dim=16)
    c = _cond()
    x = G(torch.randn(3, 128), c)
    assert x.shape == (3, 3, res, res) and x.abs().max() <= 1
    out = D.eval()(x, c)  # eval: no power iteration, so the SN weights below are the ones used
    assert out.logits.shape == (3,) and out.local.shape == (3, regions, 16) and out.cond.shape == out.h.shape
    torch.testing.assert_close(out.logits, D.l_out(out.h).squeeze(1) + (out.h * D.proj(c.sentence)).sum(1))
    with pytest.raises(ValueError, match="text-conditional"):
        G(torch.randn(3, 128))


def test_xmcgan_paper_layout_at_128():
    D = XMCDiscriminator(128, channels=96, text_dim=768)
    widths = [b.c2.parametrizations.weight.original.shape[0] for b in D.blocks]
    assert widths == [96, 192, 384, 768, 1536, 1536]  # optimized block, then [2, 4, 8, 16, 16] df
    assert D.region_block == 2 and D.blocks[D.region_block].c2.parametrizations.weight.original.shape[0] == 384
    G = XMCGenerator(128, channels=96, text_dim=768)
    assert len(G.global_blocks) == 2 and len(G.spatial_blocks) == 3  # 4→8→16, then 16→32→64→128
    assert G.b_out.gain.in_channels == 768 + 128 + 128  # S = concat(c, g), g = concat(Linear_128(s), z)


def test_generator_prompt_mix_ends_at_each_prompt():
    torch.manual_seed(0)
    G = XMCGenerator(16, channels=4, text_dim=16).eval()
    a, b, z = _cond(seed=1), _cond(seed=2), torch.randn(3, 128)
    torch.testing.assert_close(G(z, a, mix=(b, 0.0)), G(z, a))
    torch.testing.assert_close(G(z, a, mix=(b, 1.0)), G(z, b), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(G(z, a, mix=(b, 0.5)), G(z, a))


def test_every_xmc_term_reaches_the_generator():
    from cgantool.config import resolve_config
    from cgantool.engine.model import build_gan
    from cgantool.terms import Batch

    cfg = resolve_config("xmcgan", sets=["model.g_channels=4", "model.d_channels=4", "loss.xmc.image_encoder=none"])
    info = {"resolution": 16, "num_classes": 0, "text": {"dim": 16}}
    gan = build_gan(cfg, info)
    (term,) = gan.terms
    c = _cond(B=4, lengths=(2, 5, 3, 1))
    real_img = torch.rand(4, 3, 16, 16) * 2 - 1
    real = gan.D(real_img, c)
    d_parts = term.d_loss(None, real, None, Batch(c, c, real_img, None))
    assert set(d_parts) == {"sent", "word"}
    for name in ("sent", "word", "img"):
        gan.G.zero_grad()
        fake_img = gan.G(torch.randn(4, 128), c)
        parts = term.g_loss(None, gan.D(fake_img, c), real, Batch(c, c, real_img, fake_img))
        assert set(parts) == {"sent", "word", "img"}
        parts[name].backward()
        grad = sum(p.grad.abs().sum() for p in gan.G.parameters() if p.grad is not None)
        assert grad > 0, name


def test_image_encoder_resolution_offline(tmp_path, monkeypatch):
    from cgantool.nets.image_encoders import resolve_image_encoder, weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert resolve_image_encoder("auto") == "none"
    with pytest.raises(OfflineError) as e:
        resolve_image_encoder("resnet50")
    assert str(weights_path("resnet50")) in e.value.message and "download.pytorch.org" in e.value.hint


def test_pretrained_image_encoder_term_uses_local_weights(tmp_path, monkeypatch):
    """A stand-in resnet50 file in torch hub's cache: 'auto' finds it and the term back-propagates through it."""
    import torchvision

    from cgantool.config import resolve_config
    from cgantool.nets.image_encoders import PretrainedImageEncoder, resolve_image_encoder, weights_path
    from cgantool.terms import Batch
    from cgantool.terms.xmc import XMCTerm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    path = weights_path("resnet50")
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    assert resolve_image_encoder("auto") == "resnet50"
    enc = PretrainedImageEncoder("resnet50")
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    cfg = resolve_config("xmcgan", sets=["loss.xmc.image_encoder=resnet50", "loss.xmc.sentence=0", "loss.xmc.word=0",
                                         "loss.xmc.image=0"]).loss.xmc
    term = XMCTerm(cfg, None)
    fake = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    parts = term.g_loss(None, None, None, Batch(None, None, torch.rand(2, 3, 16, 16) * 2 - 1, fake))
    assert set(parts) == {"img_pre"}
    parts["img_pre"].backward()
    assert fake.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ feature bank


def test_text_bank_deduplicates_and_samples_own_captions():
    from cgantool.text.bank import TextBank

    captions = [["a red circle", "a circle"], ["a blue square"], ["a red circle", "a green star", "a star"]]
    vocab = Vocab.build(c for caps in captions for c in caps)
    torch.manual_seed(0)
    enc = BuiltinText(vocab, dim=8)
    bank = TextBank(captions, enc, torch.device("cpu"))
    assert len(bank.texts) == 5  # "a red circle" once
    direct = enc.encode(bank.texts)
    torch.testing.assert_close(bank.sentence, direct.sentence)
    g = torch.Generator().manual_seed(0)
    seen = {i: set() for i in range(3)}
    for _ in range(30):
        idx = torch.tensor([0, 1, 2, 2])
        cond = bank.sample(idx, g)
        for k, i in enumerate(idx.tolist()):
            match = (bank.sentence == cond.sentence[k]).all(1).nonzero().flatten().tolist()
            seen[i].add(bank.texts[match[0]])
    assert seen == {0: {"a red circle", "a circle"}, 1: {"a blue square"}, 2: {"a red circle", "a green star", "a star"}}
    again = TextBank(captions, enc, torch.device("cpu"))  # from the disk cache
    torch.testing.assert_close(again.words, bank.words)


# ------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("sets,message", [
    (["model.conditioning=class"], "go together"),
    (["text.encoder=bert"], "text.encoder"),
    (["loss.infomax.weight=0.2"], "loss.infomax"),
])
def test_xmcgan_config_errors(sets, message):
    from cgantool.config import resolve_config

    with pytest.raises(ConfigError, match=message):
        resolve_config("xmcgan", sets=sets)


def test_loss_xmc_needs_text_conditioning():
    from cgantool.config import resolve_config

    with pytest.raises(ConfigError, match="loss.xmc"):
        resolve_config("sngan", sets=["loss.xmc.weight=1"])


def test_optional_encoders_fail_clearly_or_work(tmp_path, monkeypatch):
    from cgantool.text.encoders import HFText, MiniLMText

    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="minilm"):
            MiniLMText()
    else:
        enc = MiniLMText(max_words=17)
        c = enc.encode(["a red circle", "a large blue square in the center"])
        assert c.words.shape[-1] == 384 and c.mask.sum(1).tolist()[0] < c.mask.sum(1).tolist()[1]
        ref = enc.model.encode(["a red circle"], convert_to_tensor=True)  # the model's own sentence embedding
        assert F.cosine_similarity(c.sentence[:1], ref.cpu()).item() > 0.999
    try:
        import transformers
    except ImportError:
        with pytest.raises(ConfigError, match="transformers"):
            HFText("bert-base-uncased")
        return
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="cannot load the text encoder") as e:
        HFText(str(tmp_path / "no-such-bert"))
    assert "model.safetensors" in e.value.hint
    # a tiny BERT written locally: the official recipe's shapes (CLS/SEP count as words, padded to max_words)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "circle", "blue", "square"]
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "bert" / "vocab.txt"))
    tok.save_pretrained(tmp_path / "bert")
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "bert", safe_serialization=True)
    enc = HFText(str(tmp_path / "bert"), max_words=6)
    c = enc.encode(["a red circle", "a blue square"])
    assert c.words.shape == (2, 6, 16) and c.mask.sum(1).tolist() == [5, 5]
    torch.testing.assert_close(c.sentence, c.words.sum(1) / 5)  # the official quirk: padding in the sum


# ------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def xmc_run(tmp_path_factory, runner):
    out = tmp_path_factory.mktemp("xmc") / "run"
    result = invoke(runner, "train", "--preset", "xmcgan", "--data", "shapes:16", "--steps", "4", "--batch-size", "8",
                    "--out", out, "--no-progress", "--device", "cpu", *XMC_TINY)
    assert result.exit_code == 0, result.output
    return out


def test_xmc_run_writes_text_encoder_and_captions(xmc_run, runner):
    from cgantool.checkpoint import load_checkpoint

    r = invoke(runner, "info", xmc_run / "checkpoints" / "last.safetensors")
    assert r.exit_code == 0 and "text encoder builtin, 32-d" in r.output

    ckpt = load_checkpoint(xmc_run / "checkpoints" / "last.safetensors")
    info = ckpt.data_info["text"]
    assert info["encoder"] == "builtin" and info["dim"] == 32 and "circle" in info["vocab"]
    assert ckpt.has("text_encoder") and ckpt.config.loss.xmc.image_encoder in ("none", "resnet50", "vgg16")
    lines = (xmc_run / "samples" / "captions.txt").read_text().splitlines()
    assert len(lines) == 8 and lines[0].startswith("column 1: ")
    keys = json.loads((xmc_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"d/xmc_sent", "d/xmc_word", "g/xmc_sent", "g/xmc_word", "g/xmc_img"} <= set(keys)


def test_checkpoint_alone_serves_prompts(xmc_run, runner, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("CGANTOOL_CACHE", str(tmp_path / "empty-cache"))  # nothing cached: the file must suffice
    ckpt = xmc_run / "checkpoints" / "last.safetensors"
    r = invoke(runner, "sample", ckpt, "--prompt", "a large blue square in the center", "-n", "4", "--out", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "s" / "grid.png").size[0] > 16
    (tmp_path / "p.txt").write_text("a red circle\na green star at the top\n")
    r = invoke(runner, "sample", ckpt, "--prompts-file", tmp_path / "p.txt", "-n", "4", "--out", tmp_path / "s2")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s2" / "prompts.tsv").read_text().splitlines()[1] == "0001.png\ta green star at the top"
    r = invoke(runner, "interpolate", ckpt, "--prompts", "a red circle", "a blue square", "--frames", "3",
               "--out", tmp_path / "walk.gif")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "walk.gif").n_frames == 4


def test_prompt_errors_exit_2(xmc_run, tiny_run, runner, tmp_path):
    ckpt = xmc_run / "checkpoints" / "last.safetensors"
    r = invoke(runner, "sample", ckpt, "--prompt", "a purple hexagon", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "'purple'" in r.output and "Traceback" not in r.output
    r = invoke(runner, "sample", ckpt, "--out", tmp_path / "b")
    assert r.exit_code == 2 and "needs a caption" in r.output
    r = invoke(runner, "sample", tiny_run / "checkpoints" / "last.safetensors", "--prompt", "a red circle",
               "--out", tmp_path / "c")
    assert r.exit_code == 2 and "not text-conditional" in r.output
    r = invoke(runner, "interpolate", ckpt, "--prompts", "a red circle", "--out", tmp_path / "w.gif")
    assert r.exit_code == 2 and "at least two captions" in r.output


def test_xmcgan_on_data_without_captions_exits_2(runner, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(folder / f"{i}.png")
    r = invoke(runner, "train", "--preset", "xmcgan", "--data", folder, "--steps", "1", "--out", tmp_path / "run",
               "--no-progress", "--set", "data.resolution=16", *XMC_TINY)
    assert r.exit_code == 2 and "no captions" in r.output
    assert not (tmp_path / "run").exists()


def test_xmc_resume_equals_uninterrupted(runner, tmp_path):
    from cgantool.checkpoint import load_checkpoint

    common = ["--preset", "xmcgan", "--data", "shapes:16", "--batch-size", "4", "--no-progress", "--device", "cpu",
              *XMC_TINY, "--set", "train.checkpoint_every=2"]
    assert invoke(runner, "train", *common, "--steps", "4", "--out", tmp_path / "full").exit_code == 0
    assert invoke(runner, "train", *common, "--steps", "2", "--out", tmp_path / "part").exit_code == 0
    r = invoke(runner, "train", *common, "--steps", "4", "--out", tmp_path / "part", "--resume")
    assert r.exit_code == 0, r.output
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.safetensors").tensors("G")
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.safetensors").tensors("G")
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_eval_of_text_model_reports_caption_alignment(xmc_run, runner):
    r = invoke(runner, "eval", xmc_run / "checkpoints" / "last.safetensors", "-n", "40", "--device", "cpu",
               "--feature-extractor", "tests.fake_extractor:build", "--json", "-")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout[r.stdout.index("{"):])["metrics"]
    assert 0 <= m["attribute_accuracy"] <= 1 and m["attribute_accuracy_real"] > 0.8
    assert math.isfinite(m["fid"])


def test_xmcgan_trains_on_a_captions_jsonl_with_several_captions_per_image(runner, tmp_path):
    from PIL import Image

    from cgantool.checkpoint import load_checkpoint

    lines = []
    for i, (colour, rgb) in enumerate([("red", (220, 30, 30)), ("blue", (30, 60, 220))] * 4):
        Image.new("RGB", (20, 20), rgb).save(tmp_path / f"{i}.png")
        lines += [json.dumps({"file": f"{i}.png", "caption": f"a {colour} square"}),
                  json.dumps({"file": f"{i}.png", "caption": f"something {colour} on the left"})]
    (tmp_path / "caps.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    r = invoke(runner, "train", "--preset", "xmcgan", "--data", tmp_path / "caps.jsonl", "--steps", "2", "--batch-size",
               "4", "--out", out, "--no-progress", "--device", "cpu", *XMC_TINY, "--set", "data.resolution=16")
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(out / "checkpoints" / "last.safetensors")
    assert set(ckpt.data_info["text"]["vocab"]) == {"a", "red", "blue", "square", "something", "on", "the", "left"}
    r = invoke(runner, "sample", out / "checkpoints" / "last.safetensors", "--prompt", "a blue square", "-n", "2",
               "--out", tmp_path / "s")
    assert r.exit_code == 0, r.output


def test_an_unknown_prompt_word_names_the_closest_known_one():
    from cgantool.errors import CgantoolError

    vocab = Vocab.build(["a red circle", "a blue square"])
    with pytest.raises(CgantoolError) as e:
        vocab.encode(["a red circel xyzzy"], max_words=8)
    assert "'circel'" in e.value.message and "'xyzzy'" in e.value.message
    assert "'circel' → 'circle'?" in e.value.hint and "xyzzy' →" not in e.value.hint
    ids, lengths = vocab.encode(["a red circel"], max_words=8, unknown="ignore")
    assert lengths.tolist() == [2]
