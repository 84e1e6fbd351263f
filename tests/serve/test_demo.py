"""`vitgpt2 demo`: the page captions a photo dropped on it in a real (headless) browser as the pipeline does, its
options reach Gradio, and `--write_space` writes a Space whose app needs neither vitgpt2 nor anything but gradio and
transformers."""

import json
import os
import shutil
import socket
import subprocess
import sys

import PIL.Image
import pytest
import skimage.data

from vitgpt2.cli import main
from vitgpt2.inference import captioning_pipeline
from vitgpt2.publish.pipeline_code import save_pipeline_code

gradio = pytest.importorskip("gradio")
from vitgpt2.serve.space_app import build_app  # noqa: E402

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def photo(tmp_path) -> str:
    path = str(tmp_path / "coffee.jpg")
    PIL.Image.fromarray(skimage.data.coffee()).save(path)
    return path


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("VITGPT2_REQUIRE_BROWSER"):  # set by .ci/run, which installs them
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_the_page_captions_a_dropped_photo_as_the_pipeline_does(trained_captioner, browser, photo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    pipe = captioning_pipeline(trained_captioner)
    example = str(tmp_path / "astronaut.png")
    PIL.Image.fromarray(skimage.data.astronaut()).save(example)
    app = build_app(pipe, [example])
    port = free_port()
    app.launch(server_port=port, server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 60)
        caption = lambda: browser.find_element(By.CSS_SELECTOR, "#caption textarea").get_attribute("value")  # noqa: E731
        wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#picture input[type=file]"))
        browser.find_element(By.CSS_SELECTOR, "#picture input[type=file]").send_keys(photo)
        wait.until(lambda driver: caption())
        expected = pipe(photo, num_beams=3, max_new_tokens=32)[0]["generated_text"]
        assert caption() == expected and expected
        browser.save_screenshot(str(tmp_path / "demo.png"))

        # one beam instead of three, through the page's number box, then the button
        beams = browser.find_element(By.CSS_SELECTOR, "#num_beams input[type=number]")
        beams.send_keys(Keys.CONTROL, "a")
        beams.send_keys("1", Keys.TAB)
        browser.execute_script("document.querySelector('#caption textarea').value = ''")
        browser.find_element(By.CSS_SELECTOR, "#caption_button").click()
        greedy = pipe(photo, num_beams=1, max_new_tokens=32)[0]["generated_text"]
        wait.until(lambda driver: caption() == greedy)
    finally:
        app.close()
    with PIL.Image.open(tmp_path / "demo.png") as shot:
        assert shot.format == "PNG" and shot.size[0] >= 1000


def test_launch_options_pass_through_to_gradio(trained_captioner, photo, monkeypatch):
    seen = {}
    monkeypatch.setattr(gradio.Blocks, "launch", lambda self, **kwargs: seen.update(kwargs))
    argv = ["demo", "--model", trained_captioner, "--port", "7999", "--server_name", "0.0.0.0", "--share",
            "--auth", "me:secret:colon", "--examples", photo]  # fmt: skip
    assert main(argv) == 0
    assert seen["server_port"] == 7999 and seen["server_name"] == "0.0.0.0" and seen["share"] is True
    assert seen["auth"] == ("me", "secret:colon")


def test_bad_demo_arguments_are_clear_errors(trained_captioner, tiny_models, tmp_path, capsys):
    assert main(["demo", "--model", tiny_models[0]]) == 2
    assert "holds a vit model" in capsys.readouterr().err
    assert main(["demo", "--model", trained_captioner, "--examples", str(tmp_path / "none.jpg")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["demo", "--model", trained_captioner, "--write_space", str(tmp_path / "space")]) == 2
    assert "push it first" in capsys.readouterr().err


def test_the_written_space_runs_without_vitgpt2(trained_captioner, photo, tmp_path):
    space = tmp_path / "space"
    assert main(["demo", "--model", "someone/vit-gpt2-coco", "--write_space", str(space), "--examples", photo]) == 0
    card = (space / "README.md").read_text()
    assert "sdk: gradio" in card and "app_file: app.py" in card and "- someone/vit-gpt2-coco" in card
    assert "gradio" in (space / "requirements.txt").read_text() and (space / "examples" / "coffee.jpg").is_file()
    assert "'someone/vit-gpt2-coco'" in (space / "app.py").read_text()

    model = shutil.copytree(trained_captioner, tmp_path / "model")
    save_pipeline_code(model)  # as every folder run_captioning.py saves and pushes has it
    script = (
        "import json, sys\n"
        "sys.meta_path.insert(0, type('NoVitgpt2', (), {'find_spec': staticmethod(lambda name, *a: "
        "(_ for _ in ()).throw(ImportError(name)) if name.split('.')[0] == 'vitgpt2' else None)})())\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import app\n"
        "pipe = app.load_captioner(app.MODEL)\n"
        "page = app.build_app(pipe, ['examples/coffee.jpg'])\n"
        "print('RESULT ' + json.dumps(pipe(sys.argv[2], num_beams=3, max_new_tokens=32)[0]['generated_text']))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(CAPTIONER=str(model), HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-I", "-c", script, str(space), photo], cwd=space, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = captioning_pipeline(trained_captioner)(photo, num_beams=3, max_new_tokens=32)[0]["generated_text"]
    assert json.loads(result.stdout.split("RESULT ", 1)[1]) == expected
