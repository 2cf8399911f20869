// The pixel clock shared by every framework's version: where the strip is, the frame rate,
// and the Helios instance that gives each framework its frame.
//
// Four rows (y = 16, 80, 144, 208) of 24 squares (48x48 px at x = 16 + 52*i), bit 0 leftmost,
// each row showing the frame index n: the layout examples/compositions/clock paints and the
// tests' clock reader samples (centre of each square, white = 1). Everything else is black
// but a grey label at y >= 620.
import { Helios } from '@helios-project/core';

export const BITS = 24;
export const X0 = 16;
export const PITCH = 52;
export const SIZE = 48;
export const ROWS = [16, 80, 144, 208];

// Frame rate: `?fps=NUM[/DEN]` in the page's URL, else the render's own rate (helios-infra sets
// window.__HELIOS_CONFIG__.fps), else 30. Duration: `?duration=SECONDS`, else 10.
const parseFps = (s) => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:\/\s*(\d+(?:\.\d+)?))?\s*$/.exec(s || '');
  if (!m) return null;
  const num = Number(m[1]), den = m[2] === undefined ? 1 : Number(m[2]);
  return num > 0 && den > 0 ? { num, den } : null;
};
const query = new URLSearchParams(location.search);
const cfg = (typeof window !== 'undefined' && window.__HELIOS_CONFIG__) || {};
export const rate = parseFps(query.get('fps')) || (cfg.fps && cfg.fps.num > 0 ? cfg.fps : null) || { num: 30, den: 1 };
export const fps = rate.num / rate.den;
export const duration = Number(query.get('duration')) > 0 ? Number(query.get('duration')) : 10;
export const totalFrames = Math.round(duration * fps);

/** The bits of `n`, least significant first. */
export const bits = (n) => Array.from({ length: BITS }, (_, i) => (n >>> i) & 1);

/** The frame a Helios state shows, as an integer. */
export const frameOf = (state) => Math.round(state.currentFrame);

/** The composition's clock, driven by the renderer through document-timeline binding. */
export function makeHelios() {
  const helios = new Helios({ fps, duration, width: 1280, height: 720 });
  helios.bindToDocumentTimeline();
  window.helios = helios;
  return helios;
}

/** The label under the strip, for people (never sampled). */
export const label = (name, n) => `${name}: frame ${n} @ ${rate.num}/${rate.den} fps`;
