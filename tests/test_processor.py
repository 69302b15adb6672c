"""DecoVLMProcessor: resize modes, <image> expansion, chat template, errors naming the input."""

import numpy as np
import pytest
import torch
from PIL import Image

from decovlm.modeling.processing import pad_to_square
from decovlm.testing import tiny_model


def _split_image():
    """64x32 image: left half red, right half blue."""
    arr = np.zeros((32, 64, 3), dtype=np.uint8)
    arr[:, :32] = (255, 0, 0)
    arr[:, 32:] = (0, 0, 255)
    return Image.fromarray(arr)


def _unnormalise(pixels, processor):
    mean = torch.tensor(processor.image_processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(3, 1, 1)
    return pixels * std + mean


@pytest.mark.parametrize("mode", ["naive", "pad", "crop"])
def test_resize_modes(mode):
    _, processor = tiny_model("avgpool2_4", image_resize_mode=mode)
    pixels = _unnormalise(processor.preprocess_images([_split_image()])[0], processor)
    assert pixels.shape == (3, 32, 32)
    red_left = pixels[0, 16, 2].item()
    if mode == "naive":  # stretched: left column red, right column blue, all rows image
        assert red_left > 0.9 and pixels[2, 16, 30] > 0.9 and pixels[0, 1, 2] > 0.9
    elif mode == "pad":  # pad to square with the mean colour: top rows are the mean
        mean = torch.tensor(processor.image_processor.image_mean)
        torch.testing.assert_close(pixels[:, 1, 16], mean, atol=0.02, rtol=0)
        assert red_left > 0.9
    else:  # crop: the centre square straddles the red/blue boundary, no mean rows
        assert red_left > 0.9 and pixels[2, 16, 30] > 0.9 and pixels[0, 1, 2] > 0.9


def test_pad_to_square_centres_the_image():
    padded = pad_to_square(Image.new("RGB", (20, 10), (255, 255, 255)), (0.0, 0.5, 1.0))
    assert padded.size == (20, 20)
    assert padded.getpixel((10, 2)) == (0, 128, 255) and padded.getpixel((10, 10)) == (
        255,
        255,
        255,
    )


def test_image_token_expansion_and_chat_template():
    model, processor = tiny_model("avgpool2_4")
    assert processor.expand_image_tokens("a <image> b") == "a " + "<image>" * 4 + " b"
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": "<image> what colour ?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert prompt.startswith("USER: <image> what colour ?") and prompt.endswith("ASSISTANT:")
    ids = processor(text=[prompt], images=[_split_image()])["input_ids"][0]
    assert int((ids == model.config.image_token_id).sum()) == model.num_image_tokens


def test_unreadable_image_is_named(tmp_path):
    _, processor = tiny_model("avgpool2_4")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        processor.preprocess_images([bad])


def test_bad_resize_mode_is_rejected():
    _, processor = tiny_model("avgpool2_4")
    with pytest.raises(ValueError, match="image_resize_mode must be one of"):
        type(processor)(processor.image_processor, processor.tokenizer, image_resize_mode="squash")


def test_from_model_with_an_embedding_table_padded_beyond_the_tokenizer(tmp_path):
    """Qwen2 checkpoints have more embedding rows than tokens; `<image>` must still line up."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from decovlm.modeling import DecoVLMForConditionalGeneration, DecoVLMProcessor
    from decovlm.modeling.loading import load_model
    from decovlm.testing import WORDS, tiny_llm, tiny_vision

    words = ["<unk>", "<pad>", "<s>", "</s>", *WORDS, "USER:", "ASSISTANT:", "?"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "<unk>")),
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="</s>",
    )
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    vision, image_processor = tiny_vision()
    llm = tiny_llm("qwen2", vocab_size=len(words) + 8)  # padded: 8 rows no token uses
    model = DecoVLMForConditionalGeneration.from_components(vision, llm, projector="avgpool2_4")
    assert model.config.image_token_id == len(words) + 8  # the default: one past the table
    processor = DecoVLMProcessor.from_model(model, image_processor, tokenizer)
    assert processor.image_token_id == model.config.image_token_id == len(words)
    batch = processor(text=[processor.format_question("what colour ?")], images=[_split_image()])
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == model.num_image_tokens
    out = model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 2
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded, reprocessor = load_model(tmp_path, "cpu")
    assert reloaded.config.image_token_id == reprocessor.image_token_id == len(words)


def test_from_model_still_rejects_a_real_mismatch():
    from decovlm.modeling import DecoVLMProcessor

    model, processor = tiny_model("avgpool2_4")
    model.config.image_token_id = 5  # the tokenizer already has <image> at another id
    with pytest.raises(ValueError, match="image_token_id"):
        DecoVLMProcessor.from_model(model, processor.image_processor, processor.tokenizer)
