// Drives Debian's chromium with playwright-core for tests/integration/test_web.py: one JSON
// command per line on standard input, one JSON answer per line on standard output.
//   {"cmd":"open","url":U} {"cmd":"eval","js":EXPR} {"cmd":"wait","js":EXPR,"timeout":MS}
//   {"cmd":"fill","sel":S,"value":V} {"cmd":"click","sel":S} {"cmd":"press","sel":S,"key":K}
//   {"cmd":"screenshot","path":P} {"cmd":"quit"}
// Headless chromium as root (CI containers) needs --no-sandbox.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
const page = await browser.newPage({ viewport: { width: 1500, height: 860 } });
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  let c;
  try { c = JSON.parse(line); } catch { out({ ok: false, error: 'bad command' }); continue; }
  try {
    switch (c.cmd) {
    case 'open': { const r = await page.goto(c.url); out({ ok: true, status: r ? r.status() : 0 }); break; }
    case 'eval': out({ ok: true, value: await page.evaluate(c.js) }); break;
    case 'wait': {
      // Polled with evaluate: the page's Content-Security-Policy forbids waitForFunction's eval.
      const end = Date.now() + (c.timeout || 10000);
      let v = false;
      while (!(v = await page.evaluate(c.js)) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      out(v ? { ok: true } : { ok: false, error: 'timed out waiting for ' + c.js });
      break;
    }
    case 'fill': await page.fill(c.sel, c.value); out({ ok: true }); break;
    case 'click': await page.click(c.sel); out({ ok: true }); break;
    case 'press': await page.press(c.sel, c.key); out({ ok: true }); break;
    case 'screenshot': await page.screenshot({ path: c.path }); out({ ok: true }); break;
    case 'quit': out({ ok: true, errors }); await browser.close(); process.exit(0);
    default: out({ ok: false, error: 'unknown command' });
    }
  } catch (e) {
    out({ ok: false, error: String(e), errors });
  }
}
await browser.close();
