// Why the Helios renderer's DOM mode cannot run on this machine's Chromium, in isolation:
// does Page.captureScreenshot return while CDP virtual time is paused (as the renderer leaves
// it between frames), and with --enable-begin-frame-control (which the renderer always
// passes)? Prints one line per case; each screenshot gets PROBE_TIMEOUT_MS (default 8000).
//
//   node probe-cdp.mjs [CHROMIUM]...   (default: Debian's chromium-headless-shell and chromium)
import { chromium } from 'playwright';

const exes = process.argv.slice(2);
if (exes.length === 0) exes.push('/usr/lib/chromium/chromium-headless-shell', '/usr/lib/chromium/chromium');
const limit = Number(process.env.PROBE_TIMEOUT_MS ?? 8000);

for (const exe of exes) {
  for (const beginFrameControl of [false, true]) {
    for (const paused of [false, true]) {
      const args = ['--single-process', '--disable-gpu', '--disable-gpu-compositing',
        '--run-all-compositor-stages-before-draw'];
      if (beginFrameControl) args.push('--enable-begin-frame-control');
      const browser = await chromium.launch({ executablePath: exe, headless: true, args, pipe: true });
      let verdict;
      try {
        const page = await (await browser.newContext({ viewport: { width: 640, height: 360 } })).newPage();
        const cdp = await page.context().newCDPSession(page);
        await page.goto('data:text/html,<h1>probe</h1>');
        await new Promise((r) => setTimeout(r, 1000)); // let the first frame be produced
        if (paused) await cdp.send('Emulation.setVirtualTimePolicy', { policy: 'pause', initialVirtualTime: 1704067200 });
        const t0 = Date.now();
        verdict = await Promise.race([
          cdp.send('Page.captureScreenshot', { format: 'png', fromSurface: true })
            .then((r) => `returned in ${Date.now() - t0} ms (${r.data.length} base64 bytes)`,
                  (e) => `failed: ${e.message.split('\n')[0]}`),
          new Promise((r) => setTimeout(() => r(`no reply in ${limit} ms`), limit)),
        ]);
      } catch (e) {
        verdict = `error: ${e.message.split('\n')[0]}`;
      }
      console.log(`${exe}: --enable-begin-frame-control ${beginFrameControl ? 'on ' : 'off'}, virtual time ${paused ? 'paused ' : 'running'}: Page.captureScreenshot ${verdict}`);
      await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 3000))]);
    }
  }
}
process.exit(0);
