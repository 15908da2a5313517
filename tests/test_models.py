import pytest
import torch
import torchvision
from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

from splicemix.models import MultiLabelNet, build_model, list_models

torch.manual_seed(0)


def _split_ok(model):
    bb = {id(p) for p in model.backbone_parameters()}
    hd = {id(p) for p in model.head_parameters()}
    allp = [id(p) for p in model.parameters()]
    assert len(bb) + len(hd) == len(allp)
    assert bb.isdisjoint(hd)
    assert bb | hd == set(allp)
    assert {id(model.head.weight), id(model.head.bias)} == hd


def test_list_models():
    assert list_models() == ["resnet18", "resnet50", "resnet101", "vit_b_16", "vit_tiny", "smallcnn"]


@pytest.mark.parametrize(
    "name,size,channels,grid",
    [
        ("smallcnn", 64, 128, 8),
        ("resnet18", 64, 512, 2),
        ("resnet50", 32, 2048, 1),
        ("resnet101", 32, 2048, 1),
        ("vit_tiny", 64, 192, 8),
        ("vit_b_16", 32, 768, 2),
    ],
)
def test_every_model_builds_and_runs(name, size, channels, grid):
    model = build_model(name, num_classes=7, image_size=size).eval()
    assert isinstance(model, MultiLabelNet) and model.name == name
    n = 2 if name in ("smallcnn", "resnet18", "vit_tiny") else 1
    x = torch.randn(n, 3, size, size)
    with torch.no_grad():
        logits, fmap = model.forward_features(x)
        assert fmap.shape == (n, channels, grid, grid)
        assert logits.shape == (n, 7)
        torch.testing.assert_close(model(x), logits)
        torch.testing.assert_close(model.features(x), fmap)
        torch.testing.assert_close(model.head(model.pool(fmap)), logits)
    assert model.head.in_features == channels and model.head.out_features == 7
    _split_ok(model)


def test_resnet_features_match_torchvision():
    tv = torchvision.models.resnet18(weights=None).eval()
    model = build_model("resnet18", 3).eval()
    sd = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    model.backbone.load_state_dict(sd, strict=True)
    tv.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x).mean(dim=(2, 3)), tv(x))


def test_vit_features_match_torchvision_and_drop_class_token():
    from splicemix.models import _ViTFeatures

    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=3, hidden_dim=48, mlp_dim=96).eval()
    feats = _ViTFeatures(vit).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t = vit._process_input(x)
        t = torch.cat([vit.class_token.expand(2, -1, -1), t], dim=1)
        ref = vit.encoder(t)[:, 1:]  # (2, 16, 48)
        fmap = feats(x)
    assert fmap.shape == (2, 48, 4, 4)
    torch.testing.assert_close(fmap.flatten(2).transpose(1, 2), ref)


def test_vit_other_resolution_interpolates_position_embedding():
    model = build_model("vit_tiny", 5, image_size=64).eval()
    bb = model.backbone
    # native grid: the parameter itself
    assert bb.position_embedding(8, 8) is bb.encoder.pos_embedding
    # lower grid: bicubic interpolation, as torchvision's checkpoint helper does it
    ref = interpolate_embeddings(32, 8, {"encoder.pos_embedding": bb.encoder.pos_embedding.detach().clone()})
    torch.testing.assert_close(bb.position_embedding(4, 4).detach(), ref["encoder.pos_embedding"])
    with torch.no_grad():
        low = model.features(torch.randn(3, 3, 32, 32))
        rect = model.features(torch.randn(1, 3, 32, 48))
        logits = model(torch.randn(3, 3, 32, 32))
    assert low.shape == (3, 192, 4, 4)
    assert rect.shape == (1, 192, 4, 6)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()


def test_vit_image_size_must_be_multiple_of_patch():
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        build_model("vit_tiny", 5, image_size=60)


def test_pooling_max_and_avg():
    fmap = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    mx = build_model("smallcnn", 4)
    av = build_model("smallcnn", 4, pool="avg")
    assert mx.pool_type == "max" and av.pool_type == "avg"
    torch.testing.assert_close(mx.pool(fmap), fmap.amax(dim=(2, 3)))
    torch.testing.assert_close(av.pool(fmap), fmap.mean(dim=(2, 3)))
    assert not torch.allclose(mx.pool(fmap), av.pool(fmap))
    av.load_state_dict(mx.state_dict())
    x = torch.randn(2, 3, 32, 32)
    mx.eval(), av.eval()
    with torch.no_grad():
        f = mx.features(x)
        torch.testing.assert_close(mx(x), mx.head(f.amax(dim=(2, 3))))
        torch.testing.assert_close(av(x), mx.head(f.mean(dim=(2, 3))))
    with pytest.raises(ValueError, match="pool"):
        build_model("smallcnn", 4, pool="gem")


def test_unknown_model_lists_names():
    with pytest.raises(ValueError) as e:
        build_model("resnet9000", 3)
    for name in list_models():
        assert name in str(e.value)


def test_pretrained_torchvision_resnet_checkpoint(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for p in tv.parameters():
            p.add_(torch.randn_like(p))  # make them differ from any fresh init
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(tv.state_dict(), path)
    fresh = build_model("resnet18", 6)
    model = build_model("resnet18", 6, pretrained=path)
    saved = tv.state_dict()
    own = model.backbone.state_dict()
    assert set(own) == {k for k in saved if not k.startswith("fc.")}
    for k, v in own.items():
        torch.testing.assert_close(v, saved[k])
    assert not torch.equal(fresh.backbone.conv1.weight, model.backbone.conv1.weight)
    assert model.head.weight.shape == (6, 512)  # ImageNet classifier dropped
    # str path, a {"state_dict": ...} wrapper and a whole MultiLabelNet checkpoint also load
    torch.save({"state_dict": saved}, tmp_path / "wrapped.pth")
    m2 = build_model("resnet18", 6, pretrained=str(tmp_path / "wrapped.pth"))
    torch.testing.assert_close(m2.backbone.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    torch.save(model.state_dict(), tmp_path / "mln.pth")
    m3 = build_model("resnet18", 3, pretrained=tmp_path / "mln.pth")
    torch.testing.assert_close(m3.backbone.bn1.running_var, saved["bn1.running_var"])


def test_pretrained_vit_checkpoint_other_size_is_interpolated(tmp_path):
    vit = VisionTransformer(image_size=64, patch_size=8, num_layers=6, num_heads=3, hidden_dim=192, mlp_dim=768)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    model = build_model("vit_tiny", 4, image_size=32, pretrained=tmp_path / "vit.pth")
    torch.testing.assert_close(model.backbone.conv_proj.weight, vit.conv_proj.weight)
    assert model.backbone.encoder.pos_embedding.shape == (1, 1 + 16, 192)
    same = build_model("vit_tiny", 4, image_size=64, pretrained=tmp_path / "vit.pth")
    torch.testing.assert_close(same.backbone.encoder.pos_embedding, vit.encoder.pos_embedding)


def test_pretrained_smallcnn_backbone_state(tmp_path):
    src = build_model("smallcnn", 3)
    torch.save(src.backbone.state_dict(), tmp_path / "small.pth")
    model = build_model("smallcnn", 9, pretrained=tmp_path / "small.pth")
    loaded, saved = model.backbone.state_dict(), src.backbone.state_dict()
    assert loaded.keys() == saved.keys()
    for key in saved:
        torch.testing.assert_close(loaded[key], saved[key])


def test_pretrained_missing_file_names_torchvision_file(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        build_model("resnet101", 3, pretrained=tmp_path / "nope.pth")
    msg = str(e.value)
    assert "nothing is downloaded" in msg and "local" in msg
    assert "resnet101-63fe2227.pth" in msg and "resnet101-cd907fc2.pth" in msg
    assert "nope.pth" in msg
    with pytest.raises(FileNotFoundError, match="smallcnn"):
        build_model("smallcnn", 3, pretrained=tmp_path / "nope.pth")


def test_pretrained_mismatched_keys(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="do not match the 'smallcnn' backbone.*missing keys.*unexpected keys"):
        build_model("smallcnn", 3, pretrained=tmp_path / "r18.pth")
    sd = build_model("smallcnn", 3).backbone.state_dict()
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected keys \[extra.weight\]"):
        build_model("smallcnn", 3, pretrained=tmp_path / "extra.pth")
    sd = build_model("smallcnn", 3).backbone.state_dict()
    first = next(iter(sd))  # the first convolution's weight
    sd[first] = torch.zeros(32, 3, 5, 5)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=f"shape mismatches.*{first}"):
        build_model("smallcnn", 3, pretrained=tmp_path / "shape.pth")


def test_num_classes_validated():
    with pytest.raises(ValueError, match="num_classes"):
        build_model("smallcnn", 0)
