"""The live page's server, without a browser (tests/test_browser.py drives a real one):
nothing is read from the run while nobody watches; state, images, token and Stop."""

import http.client
import io
import json
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from stepinfo_fakes import Counter, fake_steps
from stylekit.commands.live import LiveServer
from stylekit.commands.live_http import STOP_HEADER


def get(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_unwatched_run_costs_no_reads_or_copies(live):
    callback, counter = live.run("main", "recipe.toml"), Counter()
    for info in fake_steps(50, counter):
        callback(info)
    assert counter.loss_reads == 0
    state = live.runs["main"]
    assert (state.step, state.total, state.image, state.steps) == (50, 50, None, [])


def test_watched_run_serves_state_image_and_inputs(live):
    callback, counter = live.run("main", "recipe.toml"), Counter()
    steps = fake_steps(10, counter)
    callback(next(steps))
    status, body = get(live.url + "state")  # the page opens: from now on the run is sampled
    assert status == 200 and json.loads(body)["runs"][0]["image_version"] == 0
    for info in steps:
        callback(info)
    # Sampled at most every SAMPLE_SECONDS, and always at the last step.
    assert 1 <= counter.loss_reads <= 2
    run = json.loads(get(live.url + "state")[1])["runs"][0]
    assert run["step"] == 10 and run["steps"][-1] == 10 and run["losses"]["gram"][-1] == pytest.approx(4.0)
    assert run["inputs"] == ["content", "style0"]
    assert json.loads(get(live.url + f"state?since.main={len(run['steps'])}")[1])["runs"][0]["steps"] == []
    for name in ("current", "content", "style0"):
        status, body = get(live.url + f"image/main/{name}.jpg")
        assert status == 200 and Image.open(io.BytesIO(body)).size == (8, 8)
    status, page = get(live.url)
    assert status == 200 and b"<title>stylekit live</title>" in page


def test_stop_needs_the_header_and_stops_at_the_next_step(live):
    callback, counter = live.run("main"), Counter()
    steps = fake_steps(10, counter)
    callback(next(steps))
    assert get(live.url + "stop", "POST")[0] == 403  # what another site's form could send
    callback(next(steps))
    assert counter.stops == 0
    assert get(live.url + "stop", "POST", {STOP_HEADER: "1"})[0] == 204
    callback(next(steps))
    assert counter.stops == 1
    live.finish("main")
    assert json.loads(get(live.url + "state")[1])["runs"][0]["status"] == "stopped"


def test_token_required_off_loopback(live):
    assert LiveServer("127.0.0.1").token is None and LiveServer("localhost").token is None
    assert LiveServer("0.0.0.0").token and LiveServer("192.0.2.7").token  # made, never bound here
    live.token = "s3cret"  # as if bound elsewhere; the test only ever talks to loopback
    base = live.url.split("?")[0]
    assert live.url.endswith("?token=s3cret")
    assert get(base + "state")[0] == 403
    assert get(base + "state?token=wrong")[0] == 403
    assert get(base + "state?token=s3cret")[0] == 200


def test_busy_port_is_a_user_error(live):
    from stylekit.errors import UserError

    with pytest.raises(UserError, match="--live-port"):
        LiveServer("127.0.0.1", live.port).start()


def test_time_left_weighs_later_larger_stages_and_goes_when_the_run_stops(tmp_path, live):
    """Stage 2 has 4 times the pixels of stage 1: its steps take about 4 times as long. The
    time left used to be the steps left at the rate so far (0:13 shown with 34 s left), and
    stayed on the page after Stop."""
    import stylekit
    from stylekit.commands.live import stage_work
    from stylekit.testing import TINY_LOSSES, tiny_registry, write_recipe

    body = TINY_LOSSES + "\n[[stage]]\nwidth = 32\nsteps = 10\n\n[[stage]]\nwidth = 64\nsteps = 10\n"
    plan = stylekit.load(write_recipe(tmp_path, body), registry=tiny_registry())
    assert stage_work(plan) == [(32 * 24, 10), (64 * 48, 10)]
    callback, counter = live.run("main", "recipe.toml", plan), Counter()
    eta = {}
    for info in fake_steps(20, counter, stages=2):  # 0.01 s a step, as if the stages took as long
        callback(info)
        eta[info.step] = json.loads(get(live.url + "state")[1])["runs"][0]["eta"]
    # After stage 1: 0.1 s for 10 x 768 pixel-steps; 10 x 3072 to go: 0.4 s (not 10 steps x 0.01 s).
    assert eta[10] == pytest.approx(0.4)
    assert eta[15] == pytest.approx(0.15 * (10 * 3072 - 5 * 3072) / (10 * 768 + 5 * 3072))
    assert eta[20] == 0
    assert get(live.url + "stop", "POST", {STOP_HEADER: "1"})[0] == 204
    run = json.loads(get(live.url + "state")[1])["runs"][0]
    assert (run["status"], run["eta"]) == ("stopping", None)
    live.finish("main")
    run = json.loads(get(live.url + "state")[1])["runs"][0]
    assert (run["status"], run["eta"]) == ("stopped", None)


def test_time_left_counts_the_steps_a_stage_that_ended_sooner_took(tmp_path, live):
    """Stage 1 may take 10 steps but ends at step 6 ([[stage]] min_gain): the time left
    weighs the 6 it took, not the 10 it might have (it went negative, then far too long)."""
    import dataclasses

    import stylekit
    from stylekit.testing import TINY_LOSSES, tiny_registry, write_recipe

    body = TINY_LOSSES + "\n[[stage]]\nwidth = 32\nsteps = 10\nmin_gain = 0.5\ngain_steps = 3\n\n[[stage]]\nwidth = 64\nsteps = 10\n"
    plan = stylekit.load(write_recipe(tmp_path, body), registry=tiny_registry())
    callback = live.run("main", "recipe.toml", plan)
    eta = {}
    for info in fake_steps(16, Counter()):  # 0.01 s a step
        callback(dataclasses.replace(info, stage=1 if info.step <= 6 else 2, stages=2,
                                     total=20 if info.step < 6 else 16))
        eta[info.step] = json.loads(get(live.url + "state")[1])["runs"][0]["eta"]
    done, total = 6 * 768 + 5 * 3072, 6 * 768 + 10 * 3072
    assert eta[11] == pytest.approx(0.11 * (total - done) / done)
    assert eta[16] == 0


def test_run_live_gives_the_page_the_plans_stages(tmp_path, monkeypatch):
    from stylekit.commands import live as live_module
    from stylekit.testing import TINY_LOSSES, run_cli, write_recipe

    given = []
    original = live_module.LiveServer.run
    monkeypatch.setattr(live_module.LiveServer, "run",
                        lambda self, key="main", label="", plan=None: given.append(plan) or original(self, key, label, plan))
    body = TINY_LOSSES + "\n[[stage]]\nwidth = 32\nsteps = 2\n\n[[stage]]\nwidth = 64\nsteps = 1\n"
    status, _, err = run_cli("run", str(write_recipe(tmp_path, body)), "--live", "--live-port", "0")
    assert status == 0, err
    assert [live_module.stage_work(plan) for plan in given] == [[(32 * 24, 2), (64 * 48, 1)]]


def test_batch_shows_each_item_and_stop_ends_the_batch(tmp_path, live):
    from stylekit.commands.batch import run_batch
    from stylekit.testing import pattern, tiny_registry, write_recipe

    (tmp_path / "photos").mkdir()
    for i in range(3):
        pattern(32, 40, "content").save(tmp_path / "photos" / f"p{i}.png")
    recipe = write_recipe(tmp_path / "recipe")
    out = tmp_path / "out"
    args = (str(recipe), [str(tmp_path / "photos")], [], None, out, {}, tiny_registry())

    assert run_batch(*args, stream=io.StringIO(), live=live) == 0
    runs = json.loads(get(live.url + "state")[1])["runs"]
    assert [(r["key"], r["status"], r["step"]) for r in runs] == [(f"p{i}.style", "finished", 5) for i in range(3)]
    assert runs[0]["label"] == "p0.png + style.png"

    # Stop pressed: the batch starts no further item and says how to go on.
    for p in out.glob("p[12]*"):
        p.unlink()
    assert get(live.url + "stop?run=p0.style", "POST", {STOP_HEADER: "1"})[0] == 204
    log = io.StringIO()
    assert run_batch(*args, stream=log, live=live) == 130
    assert "stopped from the live page" in log.getvalue() and not (out / "p1.style.png").exists()


def test_batch_live_shows_each_image_of_a_step(tmp_path, live):
    """With several images per step, each still gets its panel, stepped together."""
    from stylekit.commands.batch import run_batch
    from stylekit.testing import pattern, tiny_registry, write_recipe

    (tmp_path / "photos").mkdir()
    for i in range(3):
        pattern(32, 40, "content").rotate(180 * i).save(tmp_path / "photos" / f"p{i}.png")
    recipe = write_recipe(tmp_path / "recipe")
    args = (str(recipe), [str(tmp_path / "photos")], [], None, tmp_path / "out", {}, tiny_registry(), "3")
    assert run_batch(*args, stream=io.StringIO(), live=live) == 0
    runs = json.loads(get(live.url + "state")[1])["runs"]
    assert sorted((r["key"], r["status"], r["step"]) for r in runs) == [(f"p{i}.style", "finished", 5) for i in range(3)]


def test_keys_are_percent_decoded(live):
    """A batch's keys are file names: the page percent-encodes each path segment."""
    from urllib.parse import quote

    keys = ["a b#1.style", "Zoë.style", 'x" onerror="alert(1).style', "100%?.style", "<b>.style"]
    for key in keys:
        callback = live.run(key)
        live.state_json()  # watched
        for info in fake_steps(2, Counter()):
            callback(info)
    for key in keys:
        for name in ("current", "content"):
            status, body = get(live.url + f"image/{quote(key, safe='')}/{name}.jpg?v=1")
            assert status == 200 and Image.open(io.BytesIO(body)).size == (8, 8), (key, name)
    assert get(live.url + "image/a%20b%231.style/nope.jpg")[0] == 404


def answer(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int | None, bytes]:
    """`get`, and (None, b'') where the server closed the connection without an answer."""
    try:
        return get(url, method, headers)
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
        return None, b""


@pytest.mark.parametrize("query", [
    "since.main=%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
    "since.main=%D9%A3",  # Arabic-Indic three: the same
    "since.main=-1", "since.main=%2B1", "since.main=1e3", "since.main=0x1", "since.main=", "since.main=%20",
    pytest.param("since.main=" + "9" * 5000, id="5000-digits"),  # past int()'s 4300 digits
    "since.main=12345678901",  # more samples than any run takes
    "since.main=%FF",  # not UTF-8
    "since.main=1&since.main=2",
    "since.%FF=1",
    pytest.param("&".join(f"f{i}=1" for i in range(200)), id="200-fields"),
])
def test_malformed_query_is_400_and_no_traceback(live, capsys, query):
    live.run("main")
    status, body = answer(live.url + "state?" + query)
    assert status == 400 and body.startswith(b"bad query"), (status, body)
    assert "Traceback" not in capsys.readouterr().err
    assert answer(live.url + "state?since.main=0")[0] == 200  # still answering


def test_image_version_must_be_a_count(live, capsys):
    callback = live.run("main")
    live.state_json()
    for info in fake_steps(2, Counter()):
        callback(info)
    assert answer(live.url + "image/main/current.jpg?v=2")[0] == 200
    assert answer(live.url + "image/main/current.jpg?v=%C2%B2")[0] == 400
    assert "Traceback" not in capsys.readouterr().err


def test_a_failing_handler_answers_500_and_prints_nothing(live, capsys, monkeypatch):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(live, "state_json", broken)
    status, body = answer(live.url + "state")
    assert status == 500 and b"a bug" not in body
    assert capsys.readouterr().err == ""
    assert answer(live.url)[0] == 200


def raw(port: int, method: str, path: str, headers: dict[str, str], host: str = "127.0.0.1") -> tuple[int | None, bytes]:
    """A request with exactly `headers` (no Host unless given), as curl -H sends them."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    except (ConnectionError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def watched_run(live):
    callback = live.run("main")
    live.state_json()
    for info in fake_steps(2, Counter()):
        callback(info)


def test_dns_rebinding_another_host_name_is_refused(live, capsys):
    """A page of evil.example whose name was rebound to 127.0.0.1 reaches the server with its
    own name in Host: it must get neither the run's state nor the user's photos, nor stop it."""
    watched_run(live)
    port = live.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", f"[::1]:{port}",
                 f"127.0.0.2:{port}", f"localhost.:{port}", f"localhost:{port}x", f"127.0.0.1:{port}:{port}",
                 f"localhost:²{port}", ""):
        for path in ("/", "/state", "/image/main/content.jpg", "/image/main/current.jpg"):
            status, body = raw(port, "GET", path, {"Host": host})
            assert status == 403 and b"refused" in body, (host, path, status)
    status, _ = raw(port, "POST", "/stop", {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}",
                                            STOP_HEADER: "1", "Content-Length": "0"})
    assert status == 403 and not live.stop_requested and live.runs["main"].status == "running"
    assert raw(port, "GET", "/state", {})[0] == 403  # no Host at all: no browser sends that
    assert raw(port, "GET", "/state", {"Host": f"127.0.0.1:{port}", "host": f"evil.example:{port}"})[0] == 403
    # The names the page is really opened at.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}"):
        assert raw(port, "GET", "/image/main/content.jpg", {"Host": host})[0] == 200, host
    assert "Traceback" not in capsys.readouterr().err


def test_another_origin_is_refused(live):
    """A browser names the page that sent a request in Origin: only the page's own may."""
    watched_run(live)
    port, own = live.port, f"127.0.0.1:{live.port}"
    stop = {"Host": own, STOP_HEADER: "1", "Content-Length": "0"}
    for origin in ("http://evil.example", f"http://evil.example:{port}", "null", f"https://{own}", f"http://{own}/x",
                   f"http://localhost:{port}"):  # the page at localhost sends Host: localhost
        assert raw(port, "POST", "/stop", {**stop, "Origin": origin})[0] == 403, origin
        assert raw(port, "GET", "/state", {"Host": own, "Origin": origin})[0] == 403, origin
    assert not live.stop_requested
    assert raw(port, "GET", "/state", {"Host": own, "Origin": f"http://{own}"})[0] == 200
    assert raw(port, "POST", "/stop", {**stop, "Origin": f"http://{own}"})[0] == 204  # the page's own Stop
    assert live.stop_requested


def test_with_a_token_any_host_name_will_do(live):
    """Off loopback the token guards every request (a rebound page cannot know it); the
    machine's names are many (its address, its name on the network), so Host is not checked.
    Origin still is."""
    watched_run(live)
    live.token = "s3cret"  # as if bound to 0.0.0.0; the test only ever talks to loopback
    port = live.port
    assert raw(port, "GET", "/state?token=s3cret", {"Host": f"studio.lan:{port}"})[0] == 200
    assert raw(port, "GET", "/state", {"Host": f"studio.lan:{port}"})[0] == 403
    assert raw(port, "GET", "/state?token=s3cret", {"Host": f"studio.lan:{port}", "Origin": "http://evil.example"})[0] == 403
    assert raw(port, "GET", "/state?token=s3cret", {"Host": f"studio.lan:{port}", "Origin": f"http://studio.lan:{port}"})[0] == 200
    status, body = raw(port, "GET", "/state?token=s3cret", {})  # no Host: no browser's request
    assert status == 403 and b"s3cret" not in body


def has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_loopback(capsys, monkeypatch, host):
    live_module = sys.modules[LiveServer.__module__]
    monkeypatch.setattr(live_module, "LINGER_SECONDS", 0.0)
    with live_module.serve(host, 0) as live:
        assert live.token is None  # loopback: no token
        port = live.port
        assert live.url == f"http://[::1]:{port}/"
        assert f"live page: http://[::1]:{port}/" in capsys.readouterr().err  # what the user sees
        watched_run(live)
        status, body = get(live.url + "state")
        assert status == 200 and json.loads(body)["runs"][0]["key"] == "main"
        assert get(live.url + "image/main/content.jpg")[0] == 200
        for name, expected in ((f"[::1]:{port}", 200), (f"localhost:{port}", 200), (f"[0:0::1]:{port}", 200),
                               (f"127.0.0.1:{port}", 403), (f"::1:{port}", 403), (f"[::1]{port}", 403),
                               (f"evil.example:{port}", 403)):
            assert raw(port, "GET", "/state", {"Host": name}, host="::1")[0] == expected, name
        assert raw(port, "POST", "/stop", {"Host": f"[::1]:{port}", "Origin": f"http://[::1]:{port}", STOP_HEADER: "1",
                                           "Content-Length": "0"}, host="::1")[0] == 204


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_busy_ipv6_port_is_a_user_error_with_brackets():
    from stylekit.errors import UserError

    with LiveServer("::1", 0) as live, pytest.raises(UserError, match=rf"cannot serve on \[::1\]:{live.port} "):
        LiveServer("::1", live.port).start()


# ---------------------------------------------------------------- the table in docs/reliability.md

LIVE_CASES = tomllib.loads((Path(__file__).parent / "corpus" / "live_cases.toml").read_text(encoding="utf-8"))["request"]


@pytest.fixture(scope="module")
def table_server():
    server = LiveServer("127.0.0.1", 0)
    server.start()
    for key in ("main", "a b#1.style", "Zoë.style"):
        callback = server.run(key)
        server.state_json()
        for info in fake_steps(2, Counter()):
            callback(info)
    yield server
    server.close()


@pytest.mark.parametrize("case", LIVE_CASES, ids=[case["id"] for case in LIVE_CASES])
def test_live_case(table_server, capsys, case):
    """Each request of tests/corpus/live_cases.toml, in order, to one server."""
    port = table_server.port
    headers = {k: v.replace("{port}", str(port)) for k, v in case.get("headers", {"Host": "127.0.0.1:{port}"}).items()}
    if case.get("method", "GET") == "POST":
        headers["Content-Length"] = "0"
    status, body = raw(port, case.get("method", "GET"), case["path"], headers)
    assert status == case["status"], body
    if "says" in case:
        assert body.decode() == case["says"].replace("{port}", str(port))
    assert capsys.readouterr().err == ""
    assert table_server.stop_requested == case.get("stops", False)
