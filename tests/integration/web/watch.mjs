// A browser watching the web inspector while a benchmark runs: opens URL in Debian's chromium
// (playwright-core) and keeps the page open, following the live events, until process PID ends.
//   node watch.mjs URL PID
import { chromium } from 'playwright-core';

const [url, pid] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
const page = await browser.newPage();
await page.goto(url);
const alive = () => { try { process.kill(+pid, 0); return true; } catch { return false; } };
while (alive()) await new Promise((r) => setTimeout(r, 200));
const seen = await page.evaluate(() => document.getElementById('count').textContent).catch(() => '?');
process.stderr.write(`watch.mjs: the page showed ${seen} for its session\n`);
await browser.close();
