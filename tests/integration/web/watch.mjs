// A browser watching the web inspector while a benchmark runs (bench-watched.sh): launches
// Debian's chromium (playwright-core) first, writes READY (the browser is up: its start-up costs
// seconds of CPU that must not fall inside the measurement), then waits for the inspector's URL on
// the standard error of process PID (the proxy), opens it, follows the live events until PID ends,
// and says how much CPU the browser used.
//   node watch.mjs PID READY
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const [pid, ready] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
const page = await browser.newPage();
const alive = () => { try { process.kill(+pid, 0); return true; } catch { return false; } };
// Chromium run as root raises the priority of its own processes (nice -8), which a user's
// browser cannot do: for a fair measurement they are put back to the priority of everything
// else (nice 0), ours only (the descendants of this script, which launched the browser).
function descendants(root) {
  // One `ps` for the whole table, walked here (no process per level).
  const kids = new Map();
  try {
    for (const line of execFileSync('ps', ['-eo', 'pid=,ppid='], { encoding: 'utf8' }).split('\n')) {
      const [p, pp] = line.trim().split(/\s+/);
      if (!p) continue;
      if (!kids.has(pp)) kids.set(pp, []);
      kids.get(pp).push(p);
    }
  } catch { }
  const out = [];
  const walk = (p) => { for (const k of kids.get(String(p)) || []) { out.push(k); walk(k); } };
  walk(root);
  return out;
}
function renice() {
  const pids = descendants(process.pid);
  if (pids.length) try { execFileSync('renice', ['-n', '0', '-p', ...pids], { stdio: 'ignore' }); } catch { }
}
function cpuSeconds() {
  let ticks = 0;
  for (const p of descendants(process.pid)) {
    try { const f = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' '); ticks += +f[11] + +f[12]; } catch { }
  }
  return ticks / 100;
}
renice();
const atStart = cpuSeconds();
fs.writeFileSync(ready, 'up\n');
let url = null;
for (let i = 0; i < 300 && !url && alive(); i++) {
  try {
    const m = /http:\/\/\S*token=[0-9a-f]{64}/.exec(fs.readFileSync(`/proc/${pid}/fd/2`, 'latin1'));
    if (m) url = m[0];
  } catch { }
  if (!url) await new Promise((r) => setTimeout(r, 50));
}
if (url) await page.goto(url);
for (let i = 0; alive(); i++) {
  if (i % 10 === 0) renice();
  await new Promise((r) => setTimeout(r, 100));
}
const used = cpuSeconds() - atStart;
const seen = await page.evaluate(() => document.getElementById('count').textContent).catch(() => '?');
process.stderr.write(`watch.mjs: the browser used ${used.toFixed(1)} s of CPU after its start-up; ` +
                    `the page showed ${seen} for its session\n`);
await browser.close();
