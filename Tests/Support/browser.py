#!/usr/bin/env python3
"""Drives xfer's browser page (GET /) in headless Chromium over the DevTools protocol, for the end-to-end tests.

    browser.py --chromium PATH --url PAGE_URL --xfer BIN --server WS_URL --token T --name NAME
               --page-text TEXT --listen-text TEXT --file PATH --reload-at BYTES --screenshot PNG

Starts Chromium (--headless --no-sandbox, a temporary profile, DevTools on a free port), opens PAGE_URL and:
  1. waits until the page is connected and listening as NAME;
  2. sends TEXT from the page to the server (the form's "to the server" target) and waits for its status;
  3. runs `BIN send --to NAME` with the listen text and waits until the page shows it;
  4. picks FILE in the page's file input; once the page has uploaded BYTES of it, reloads the page, picks
     FILE again (the upload resumes) and waits for the result;
  5. saves a screenshot to PNG.
Prints one JSON object: the page's texts (before and after the reload), statuses and uploads, and the
screenshot's size. Exits 1 on a failure,
with {"error": ...}. Chromium is stopped by its PID.
"""
import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import websockets


class DevTools:
    """One DevTools page session: commands by id; events are ignored."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method, **params):
        self.next_id += 1
        ident = self.next_id
        await self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression, what, timeout=60):
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            try:
                value = await self.evaluate(expression)
            except RuntimeError:
                # The page is navigating (a reload): its context is gone until the new one exists.
                value = None
            if value:
                return value
            await asyncio.sleep(0.05)
        state = await self.evaluate("JSON.stringify(window.xferPage || null)")
        raise RuntimeError(f"timed out waiting for {what}; page state: {state}")

    async def pick_file(self, path):
        document = await self.call("DOM.getDocument")
        node = await self.call("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#file")
        await self.call("DOM.setFileInputFiles", files=[path], nodeId=node["nodeId"])


async def devtools_port(profile, process):
    """Chromium writes its DevTools port to DevToolsActivePort in the profile once it listens."""
    path = os.path.join(profile, "DevToolsActivePort")
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with status {process.returncode}")
        if os.path.exists(path):
            lines = open(path).read().split("\n")
            if lines and lines[0].strip():
                return int(lines[0])
        await asyncio.sleep(0.05)
    raise RuntimeError("chromium did not open its DevTools port within 30 s")


async def page_socket(port):
    for _ in range(100):
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        await asyncio.sleep(0.1)
    raise RuntimeError("chromium has no page target")


async def drive(args, dev):
    ready = "window.xferPage && xferPage.connected && xferPage.listening"
    await dev.call("Page.enable")
    await dev.call("Page.navigate", url=args.url)
    await dev.wait_for(ready, "the page to connect and listen")

    # A text from the page to the server.
    await dev.evaluate(
        "document.getElementById('target').value = 'server';"
        f"document.getElementById('text').value = {json.dumps(args.page_text)};"
        "document.getElementById('sendForm').requestSubmit(); true"
    )
    await dev.wait_for("xferPage.statuses.some((s) => s.ok === true && s.id === 1)", "the status of the page's text")

    # A text from `xfer send --to NAME` to the page.
    sent = subprocess.run(
        [args.xfer, "send", "--server", args.server, "--token", args.token, "--to", args.name, args.listen_text],
        capture_output=True,
        timeout=60,
    )
    if sent.returncode != 0:
        raise RuntimeError(f"xfer send exited {sent.returncode}: {sent.stderr.decode()}")
    await dev.wait_for(
        f"xferPage.texts.some((t) => t.text === {json.dumps(args.listen_text)})", "the page to show the text"
    )

    # An upload, interrupted by a reload once BYTES are verified, then resumed by picking the same file again.
    texts_before_reload = json.loads(await dev.evaluate("JSON.stringify(xferPage.texts)"))

    await dev.pick_file(args.file)
    await dev.wait_for(
        f"xferPage.progress && xferPage.progress.bytes >= {args.reload_at}", f"{args.reload_at} bytes uploaded"
    )
    interrupted_at = await dev.evaluate("xferPage.progress.bytes")
    await dev.call("Page.reload")
    await dev.wait_for(ready + " && xferPage.texts.length === 0", "the reloaded page to connect")
    await dev.pick_file(args.file)
    await dev.wait_for("xferPage.uploads.length > 0", "the upload to end", timeout=120)

    shot = await dev.call("Page.captureScreenshot", format="png")
    png = base64.b64decode(shot["data"])
    with open(args.screenshot, "wb") as out:
        out.write(png)
    state = await dev.evaluate("JSON.stringify(xferPage)")
    result = json.loads(state)
    result["interrupted_at"] = interrupted_at
    result["texts_before_reload"] = texts_before_reload
    result["screenshot_bytes"] = len(png)
    return result


async def main():
    parser = argparse.ArgumentParser()
    for option in ["chromium", "url", "xfer", "server", "token", "name", "page-text", "listen-text", "file"]:
        parser.add_argument("--" + option, required=True)
    parser.add_argument("--reload-at", type=int, required=True)
    parser.add_argument("--screenshot", required=True)
    args = parser.parse_args()
    profile = tempfile.mkdtemp(prefix="xfer-chromium-")
    process = subprocess.Popen(
        [
            args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--remote-debugging-port=0", "--user-data-dir=" + profile, "--window-size=1000,900", "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = await devtools_port(profile, process)
        async with websockets.connect(await page_socket(port), max_size=None) as ws:
            result = await drive(args, DevTools(ws))
        print(json.dumps(result))
        return 0
    except Exception as error:  # noqa: BLE001 - any failure is reported to the test as JSON
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 1
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
