/// The page `GET /` serves: one self-contained HTML file (CSS and JavaScript inline, no CDN, no build step).
///
/// It connects back to the server it came from: a plain WebSocket connection for texts printed by the server
/// and broadcasts, and `xfer.v1` connections (xfer-protocol(7)) to listen as a name, to send texts to a name or to
/// everyone, and to upload files in blocks with CRC-32, zlib through `CompressionStream("deflate")` when it makes
/// a block smaller, and the whole file's SHA-256 (computed in the page, incrementally). The upload id comes from
/// the file's name, size and modification time, so the same file dropped again after a reload resumes. The token
/// is typed in or given as `?token=`; `?name=` fills in the listener name.
enum BrowserPage {
    /// The page as UTF-8 (it declares `<meta charset="utf-8">`).
    static let html: [UInt8] = Array(source.utf8)

    private static let source = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>xfer</title>
        <style>
        :root { color-scheme: light dark; --accent: #2a6df4; --line: #8884; }
        body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 52rem; padding: 1rem; }
        h1 { font-size: 1.4rem; margin: 0; }
        h2 { font-size: 1rem; margin: 0 0 .5rem; }
        section { border: 1px solid var(--line); border-radius: 8px; padding: .75rem; margin: .75rem 0; }
        input[type=text], input[type=password], select { padding: .3rem; margin: .15rem .3rem .15rem 0; }
        input[type=text], input[type=password] { min-width: 12rem; }
        button { padding: .3rem .9rem; }
        #state { margin: .25rem 0; }
        #texts { list-style: none; padding: 0; margin: .5rem 0 0; max-height: 22rem; overflow-y: auto;
            font-family: ui-monospace, monospace; font-size: .9rem; }
        #texts li { padding: .2rem 0; border-bottom: 1px solid var(--line); white-space: pre-wrap;
            overflow-wrap: anywhere; }
        .from { color: var(--accent); margin-right: .5rem; }
        .note { color: #888; }
        .bad { color: #d33; }
        #drop { border: 2px dashed var(--line); border-radius: 8px; padding: 1.5rem; text-align: center; }
        #drop.over { border-color: var(--accent); background: #2a6df411; }
        progress { width: 100%; height: 1.1rem; margin-top: .6rem; }
        </style>
        </head>
        <body>
        <h1>xfer</h1>
        <p id="state" class="note">connecting…</p>
        <section>
        <h2>Connection</h2>
        <label>Token <input id="token" type="password" autocomplete="off" placeholder="if the server has one"></label>
        <label>Listen as <input id="name" type="text" autocomplete="off" placeholder="listener name (optional)"></label>
        <button id="connect" type="button">Connect</button>
        </section>
        <section>
        <h2>Texts</h2>
        <form id="sendForm">
        <input id="text" type="text" autocomplete="off" placeholder="a text">
        <select id="target">
        <option value="server">to the server</option>
        <option value="name">to a listener name</option>
        <option value="all">to everyone</option>
        </select>
        <input id="to" type="text" autocomplete="off" placeholder="listener name" hidden>
        <button id="send" type="submit">Send</button>
        </form>
        <ul id="texts"></ul>
        </section>
        <section>
        <h2>Upload</h2>
        <div id="drop">Drop files here, or <input id="file" type="file" multiple aria-label="choose files to upload"></div>
        <progress id="bar" value="0" max="1"></progress>
        <p id="upload" class="note">Uploads resume: after a reload or a lost connection, drop the same file again.</p>
        </section>
        <script>
        "use strict";
        // xfer's browser page: a plain WebSocket client for texts, and xfer.v1 (see xfer-protocol(7)) for a listener
        // name, for texts to a name or to everyone, and for uploads. No library, no build step.
        const $ = (id) => document.getElementById(id);
        const params = new URLSearchParams(location.search);
        const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
        const BLOCK = 1 << 20;
        const WINDOW = 4;
        const encoder = new TextEncoder();
        const decoder = new TextDecoder();
        // What the page has seen, for people reading the console and for tests driving the page.
        const page = { connected: false, listening: false, texts: [], statuses: [], uploads: [], progress: null };
        window.xferPage = page;
        $("token").value = params.get("token") || "";
        $("name").value = params.get("name") || "";

        // ---- helpers --------------------------------------------------------------------------------------------
        let useOffset = false;
        function timezone() {
            if (!useOffset) {
                try {
                    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
                    if (zone) return zone;
                } catch (error) { /* fall back to the offset */ }
            }
            const minutes = -new Date().getTimezoneOffset();
            const abs = Math.abs(minutes);
            const two = (n) => String(n).padStart(2, "0");
            return (minutes < 0 ? "-" : "+") + two(Math.floor(abs / 60)) + ":" + two(abs % 60);
        }

        function url(query) {
            const search = new URLSearchParams(query || {});
            const token = $("token").value;
            if (token) search.set("token", token);
            const text = search.toString();
            return base + (text ? "?" + text : "");
        }

        function setState(text, bad) {
            $("state").textContent = text;
            $("state").className = bad ? "bad" : "note";
        }

        function hex(bytes) {
            return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
        }

        function showText(from, seq, text, via) {
            page.texts.push({ from, seq, text, via });
            const item = document.createElement("li");
            const who = document.createElement("span");
            who.className = "from";
            who.textContent = from + " #" + seq + (via ? " → " + via : "");
            item.append(who, document.createTextNode(text));
            $("texts").append(item);
            item.scrollIntoView({ block: "nearest" });
        }

        function showNote(text, bad) {
            const item = document.createElement("li");
            item.className = bad ? "bad" : "note";
            item.textContent = text;
            $("texts").append(item);
            item.scrollIntoView({ block: "nearest" });
        }

        // CRC-32 (ISO 3309, zlib's crc32) of a block's raw bytes.
        const crcTable = (() => {
            const table = new Uint32Array(256);
            for (let n = 0; n < 256; n++) {
                let c = n;
                for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
                table[n] = c >>> 0;
            }
            return table;
        })();
        function crc32(bytes) {
            let c = 0xffffffff;
            for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
            return (c ^ 0xffffffff) >>> 0;
        }

        // SHA-256 (FIPS 180-4), incremental: crypto.subtle has no update(), and no crypto.subtle at all over http://
        // to a host other than localhost.
        const K = new Uint32Array([
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
        ]);
        class SHA256 {
            constructor() {
                this.h = new Uint32Array([
                    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
                ]);
                this.buffer = new Uint8Array(64);
                this.buffered = 0;
                this.total = 0;
                this.w = new Uint32Array(64);
            }
            update(data) {
                let i = 0;
                this.total += data.length;
                if (this.buffered > 0) {
                    i = Math.min(64 - this.buffered, data.length);
                    this.buffer.set(data.subarray(0, i), this.buffered);
                    this.buffered += i;
                    if (this.buffered < 64) return;
                    this.compress(this.buffer, 0);
                    this.buffered = 0;
                }
                for (; i + 64 <= data.length; i += 64) this.compress(data, i);
                if (i < data.length) {
                    this.buffer.set(data.subarray(i), 0);
                    this.buffered = data.length - i;
                }
            }
            compress(d, o) {
                const w = this.w;
                for (let t = 0; t < 16; t++) {
                    const p = o + 4 * t;
                    w[t] = (d[p] << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3];
                }
                for (let t = 16; t < 64; t++) {
                    const x = w[t - 15];
                    const y = w[t - 2];
                    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
                    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
                    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
                }
                const h = this.h;
                let a = h[0], b = h[1], c = h[2], dd = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
                for (let t = 0; t < 64; t++) {
                    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
                    const t1 = (hh + s1 + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
                    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
                    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
                    hh = g; g = f; f = e; e = (dd + t1) | 0; dd = c; c = b; b = a; a = (t1 + t2) | 0;
                }
                h[0] += a; h[1] += b; h[2] += c; h[3] += dd; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
            }
            digest() {
                const bits = this.total * 8;
                const pad = new Uint8Array((this.buffered < 56 ? 64 : 128) - this.buffered);
                pad[0] = 0x80;
                const view = new DataView(pad.buffer);
                view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
                view.setUint32(pad.length - 4, bits >>> 0);
                this.update(pad);
                const out = new Uint8Array(32);
                const outView = new DataView(out.buffer);
                for (let i = 0; i < 8; i++) outView.setUint32(4 * i, this.h[i]);
                return out;
            }
        }

        // zlib (RFC 1950) through the browser's CompressionStream("deflate"); null where there is none.
        async function deflate(raw) {
            if (typeof CompressionStream === "undefined") return null;
            const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
            return new Uint8Array(await new Response(stream).arrayBuffer());
        }

        // ---- xfer.v1 control messages (big-endian; see xfer-protocol(7)) ------------------------------------------
        class Writer {
            constructor(type) {
                this.parts = [];
                this.length = 0;
                this.u8(1).u8(type);
            }
            raw(bytes) {
                this.parts.push(bytes);
                this.length += bytes.length;
                return this;
            }
            number(size, set) {
                const bytes = new Uint8Array(size);
                set(new DataView(bytes.buffer));
                return this.raw(bytes);
            }
            u8(v) { return this.raw(Uint8Array.of(v)); }
            u16(v) { return this.number(2, (view) => view.setUint16(0, v)); }
            u32(v) { return this.number(4, (view) => view.setUint32(0, v)); }
            u64(v) { return this.number(8, (view) => view.setBigUint64(0, BigInt(v))); }
            str16(text) {
                const bytes = encoder.encode(text);
                return this.u16(bytes.length).raw(bytes);
            }
            fields(object) {
                const keys = Object.keys(object).sort();
                this.u16(keys.length);
                for (const key of keys) this.str16(key).str16(String(object[key]));
                return this;
            }
            bytes() {
                const out = new Uint8Array(this.length);
                let offset = 0;
                for (const part of this.parts) {
                    out.set(part, offset);
                    offset += part.length;
                }
                return out;
            }
        }

        class Reader {
            constructor(buffer) {
                this.bytes = new Uint8Array(buffer);
                this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
                this.at = 0;
            }
            need(n) {
                if (this.at + n > this.bytes.length) throw new Error("control message too short");
                const at = this.at;
                this.at += n;
                return at;
            }
            u8() { return this.bytes[this.need(1)]; }
            u16() { return this.view.getUint16(this.need(2)); }
            u32() { return this.view.getUint32(this.need(4)); }
            u64() { return Number(this.view.getBigUint64(this.need(8))); }
            take(n) { const at = this.need(n); return this.bytes.subarray(at, at + n); }
            str16() { return decoder.decode(this.take(this.u16())); }
            rest() { return decoder.decode(this.take(this.bytes.length - this.at)); }
            fields() {
                const fields = {};
                for (let n = this.u16(); n > 0; n--) {
                    const key = this.str16();
                    fields[key] = this.str16();
                }
                return fields;
            }
        }

        function decode(buffer) {
            const r = new Reader(buffer);
            if (r.u8() !== 1) throw new Error("the server speaks another protocol version");
            const type = r.u8();
            switch (type) {
            case 0x02: return { type: "welcome", fields: r.fields() };
            case 0x03: {
                const id = r.u64();
                const flags = r.u8();
                const delivered = r.u32();
                const held = r.u32();
                const code = r.str16();
                return { type: "status", id, ok: (flags & 1) !== 0, delivered, held, code, reason: r.str16() };
            }
            case 0x04: return { type: "ack", first: r.u64(), last: r.u64() };
            case 0x05: {
                const seq = r.u64();
                const from = r.str16();
                return { type: "deliver", seq, from, text: r.rest() };
            }
            case 0x11: return { type: "accept", offset: r.u64() };
            case 0x13: return { type: "block_ack", offset: r.u64() };
            case 0x14: {
                const offset = r.u64();
                return { type: "block_nack", offset, reason: r.rest() };
            }
            case 0x16: {
                const size = r.u64();
                const sha256 = hex(r.take(32));
                return { type: "saved", size, sha256, name: r.rest() };
            }
            case 0x7f: {
                const code = r.str16();
                return { type: "error", code, message: r.rest() };
            }
            default: throw new Error("unknown control message type " + type);
            }
        }

        // An xfer.v1 connection: sends hello on open and hands every control message to onMessage.
        function session(query, hello, onMessage, onClose) {
            const ws = new WebSocket(url(query), "xfer.v1");
            ws.binaryType = "arraybuffer";
            ws.onopen = () => {
                const fields = Object.assign({ timezone: timezone(), client: "xfer-page" }, hello);
                ws.send(new Writer(0x01).fields(fields).bytes());
            };
            ws.onmessage = (event) => {
                if (typeof event.data === "string") return;
                let message;
                try {
                    message = decode(event.data);
                } catch (error) {
                    ws.close(1002, String(error.message).slice(0, 100));
                    return;
                }
                onMessage(message);
            };
            ws.onclose = onClose;
            return ws;
        }

        // ---- texts: a plain connection, and a listener connection for a name --------------------------------------
        let plain = null;
        let listener = null;
        let retryDelay = 1000;
        let retryTimer = null;

        function connect() {
            clearTimeout(retryTimer);
            for (const ws of [plain, listener]) {
                if (ws) {
                    ws.onclose = null;
                    ws.close(1000);
                }
            }
            plain = null;
            listener = null;
            page.connected = false;
            page.listening = false;
            const name = $("name").value.trim();
            if (name && !/^[A-Za-z0-9._@-]{1,128}$/.test(name)) {
                setState("a listener name is 1-128 letters, digits, '.', '_', '-', '@'", true);
                return;
            }
            setState("connecting to " + base + " …");
            openPlain();
            if (name) openListener(name);
        }

        function reconnectLater(why) {
            page.connected = false;
            page.listening = false;
            setState(why + "; connecting again in " + Math.round(retryDelay / 1000) + " s", true);
            clearTimeout(retryTimer);
            retryTimer = setTimeout(connect, retryDelay);
            retryDelay = Math.min(retryDelay * 2, 30000);
        }

        function describeState() {
            const name = $("name").value.trim();
            setState("connected to " + base + (page.listening ? " · listening as " + name : ""));
        }

        function openPlain() {
            const ws = new WebSocket(url());
            plain = ws;
            ws.onopen = () => {
                ws.send(timezone());
                page.connected = true;
                retryDelay = 1000;
                describeState();
            };
            ws.onmessage = (event) => {
                let message;
                try {
                    message = JSON.parse(event.data);
                } catch (error) {
                    return;
                }
                if ("ok" in message) {
                    page.statuses.push(message);
                    if (message.code === "bad_timezone" && !useOffset) {
                        useOffset = true;
                    } else if (!message.ok) {
                        showNote("✗ " + (message.reason || message.message || message.code), true);
                    } else {
                        showNote("✓ text " + message.id + " printed by the server");
                    }
                } else if ("text" in message) {
                    showText(message.from, message.seq, message.text, "");
                }
            };
            ws.onclose = (event) => {
                if (plain !== ws) return;
                const why = event.code === 1006 && !page.connected
                    ? "cannot connect (wrong or missing token? server down?)"
                    : "connection closed (" + event.code + (event.reason ? ": " + event.reason : "") + ")";
                reconnectLater(why);
            };
        }

        function openListener(name) {
            const ws = session({}, { role: "listen", name }, (message) => {
                if (message.type === "welcome") {
                    page.listening = true;
                    describeState();
                } else if (message.type === "deliver") {
                    showText(message.from, message.seq, message.text, name);
                } else if (message.type === "error") {
                    showNote("listener: " + message.code + ": " + message.message, true);
                }
            }, (event) => {
                if (listener !== ws) return;
                reconnectLater("listener connection closed (" + event.code + ")");
            });
            listener = ws;
        }

        // A text to a name or to everyone goes over its own short xfer.v1 `send` connection.
        function sendRelayed(text, hello, label) {
            let answered = false;
            const ws = session({}, Object.assign({ role: "send" }, hello), (message) => {
                if (message.type === "welcome") {
                    ws.send(text);
                } else if (message.type === "status" || message.type === "ack") {
                    answered = true;
                    page.statuses.push(message);
                    if (message.type === "ack" || message.ok) {
                        const counts = message.type === "status"
                            ? ": delivered " + message.delivered + ", held " + message.held : "";
                        showNote("✓ sent to " + label + counts);
                    } else {
                        showNote("✗ " + message.code + ": " + message.reason, true);
                    }
                    ws.close(1000);
                } else if (message.type === "error") {
                    answered = true;
                    showNote("✗ " + message.code + ": " + message.message, true);
                }
            }, (event) => {
                if (!answered) showNote("✗ not sent: connection closed (" + event.code + ")", true);
            });
        }

        $("target").addEventListener("change", () => {
            $("to").hidden = $("target").value !== "name";
        });
        $("sendForm").addEventListener("submit", (event) => {
            event.preventDefault();
            const text = $("text").value;
            const target = $("target").value;
            if (target === "server") {
                if (!plain || plain.readyState !== WebSocket.OPEN) {
                    showNote("not connected", true);
                    return;
                }
                plain.send(text);
            } else if (target === "all") {
                sendRelayed(text, { all: "1" }, "everyone");
            } else {
                const to = $("to").value.trim();
                if (!to) {
                    showNote("type the listener name to send to", true);
                    return;
                }
                sendRelayed(text, { to }, to);
            }
            $("text").value = "";
        });
        $("connect").addEventListener("click", () => {
            retryDelay = 1000;
            connect();
        });

        // ---- uploads ----------------------------------------------------------------------------------------------
        // The upload id is stable for one file (name, size, modification time), so dropping the same file again after
        // a reload resumes it, as `xfer upload` does.
        function uploadID(file) {
            const hasher = new SHA256();
            hasher.update(encoder.encode(["xfer-upload-browser-v1", file.name, file.size, file.lastModified].join("\n")));
            return hex(hasher.digest()).slice(0, 32);
        }

        async function read(file, start, end) {
            const bytes = new Uint8Array(await file.slice(start, end).arrayBuffer());
            if (bytes.length !== end - start) throw new Error(file.name + " changed while it was read");
            return bytes;
        }

        function showProgress(name, done, total, note) {
            page.progress = { name, bytes: done, total };
            $("bar").max = Math.max(total, 1);
            $("bar").value = total === 0 ? 1 : done;
            const percent = total === 0 ? 100 : Math.floor((done * 100) / total);
            $("upload").textContent = name + ": " + done + " of " + total + " bytes (" + percent + " %)" + (note || "");
            $("upload").className = "note";
        }

        function uploadFile(file) {
            return new Promise((resolve, reject) => {
                const id = uploadID(file);
                const size = file.size;
                const hasher = new SHA256();
                const unacked = new Map();
                let next = 0;
                let acked = 0;
                let resumedFrom = 0;
                let busy = false;
                let finished = false;
                let digest = null;
                let done = false;
                let retries = 0;
                const note = () => (resumedFrom > 0 ? ", resumed from " + resumedFrom : "");
                const fail = (message) => {
                    if (done) return;
                    done = true;
                    reject(new Error(message));
                    ws.close(1000);
                };
                const pump = async () => {
                    if (busy || done) return;
                    busy = true;
                    try {
                        while (!done && next < size && unacked.size < WINDOW) {
                            const start = next;
                            const end = Math.min(size, start + BLOCK);
                            const raw = await read(file, start, end);
                            hasher.update(raw);
                            let payload = raw;
                            let encoding = 0;
                            const packed = await deflate(raw);
                            if (packed && packed.length < raw.length) {
                                payload = packed;
                                encoding = 1;
                            }
                            const frame = new Writer(0x12).u64(start).u32(raw.length).u32(crc32(raw)).u8(encoding)
                                .raw(payload).bytes();
                            unacked.set(start, frame);
                            next = end;
                            if (!done) ws.send(frame);
                        }
                        if (!done && !finished && acked === size) {
                            finished = true;
                            const sha = hasher.digest();
                            digest = hex(sha);
                            ws.send(new Writer(0x15).u64(size).raw(sha).bytes());
                        }
                    } catch (error) {
                        fail(String(error.message || error));
                    } finally {
                        busy = false;
                    }
                    if (!done && ((next < size && unacked.size < WINDOW) || (!finished && acked === size))) pump();
                };
                const onMessage = async (message) => {
                    switch (message.type) {
                    case "welcome":
                        ws.send(new Writer(0x10).fields({
                            upload: id, name: file.name, size: String(size), block_size: String(BLOCK),
                            mtime: String(file.lastModified), kind: "file",
                        }).bytes());
                        break;
                    case "accept":
                        resumedFrom = acked = next = message.offset;
                        showProgress(file.name, acked, size, resumedFrom > 0 ? ", checking what the server has" : "");
                        try {
                            // The SHA-256 covers the whole file, also the part the server holds from before.
                            for (let at = 0; at < resumedFrom; at += BLOCK) {
                                hasher.update(await read(file, at, Math.min(resumedFrom, at + BLOCK)));
                            }
                        } catch (error) {
                            fail(String(error.message || error));
                            return;
                        }
                        showProgress(file.name, acked, size, note());
                        pump();
                        break;
                    case "block_ack":
                        acked = message.offset;
                        for (const offset of Array.from(unacked.keys())) {
                            if (offset < acked) unacked.delete(offset);
                        }
                        showProgress(file.name, acked, size, note());
                        pump();
                        break;
                    case "block_nack":
                        // Go-back-N: the server drops every later block until this one comes again.
                        retries += 1;
                        for (const offset of Array.from(unacked.keys()).sort((x, y) => x - y)) {
                            if (offset >= message.offset) ws.send(unacked.get(offset));
                        }
                        break;
                    case "saved":
                        if (message.size !== size || message.sha256 !== digest) {
                            fail("the server saved something else than this file");
                            return;
                        }
                        done = true;
                        ws.close(1000);
                        resolve({
                            name: file.name, savedAs: message.name, size, sha256: message.sha256, resumedFrom, retries,
                        });
                        break;
                    case "error":
                        fail(message.code + ": " + message.message);
                        break;
                    }
                };
                const ws = session({ upload: id }, { role: "upload" }, onMessage, (event) => {
                    fail("connection closed (" + event.code + ") after " + acked
                        + " bytes; drop the same file again to resume");
                });
            });
        }

        const queue = [];
        let uploading = false;
        async function uploadNext() {
            const file = queue.shift();
            if (!file) {
                uploading = false;
                return;
            }
            uploading = true;
            try {
                const result = await uploadFile(file);
                page.uploads.push(Object.assign({ ok: true }, result));
                showProgress(file.name, result.size, result.size, "");
                $("upload").textContent = "✓ " + file.name + " saved as " + result.savedAs + " (" + result.size
                    + " bytes, SHA-256 " + result.sha256.slice(0, 16) + "…" + (result.resumedFrom
                        ? ", resumed from " + result.resumedFrom : "") + ")";
            } catch (error) {
                page.uploads.push({ ok: false, name: file.name, error: error.message });
                $("upload").textContent = "✗ " + file.name + ": " + error.message;
                $("upload").className = "bad";
            }
            uploadNext();
        }
        function enqueue(files) {
            for (const file of files) queue.push(file);
            if (!uploading) uploadNext();
        }

        const drop = $("drop");
        for (const type of ["dragenter", "dragover"]) {
            drop.addEventListener(type, (event) => {
                event.preventDefault();
                drop.classList.add("over");
            });
        }
        for (const type of ["dragleave", "drop"]) {
            drop.addEventListener(type, (event) => {
                event.preventDefault();
                drop.classList.remove("over");
            });
        }
        drop.addEventListener("drop", (event) => enqueue(event.dataTransfer.files));
        // A file dropped beside the zone must not replace the page.
        window.addEventListener("dragover", (event) => event.preventDefault());
        window.addEventListener("drop", (event) => event.preventDefault());
        $("file").addEventListener("change", (event) => {
            enqueue(Array.from(event.target.files));
            event.target.value = "";
        });

        connect();
        </script>
        </body>
        </html>
        """#
}
