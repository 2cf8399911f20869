// The pixel clock in React, as Helios' own React examples are written: React state set from
// helios.subscribe (useVideoFrame), so React renders in a task its scheduler posts.
import React, { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { makeHelios, frameOf, bits, ROWS, X0, PITCH, SIZE, label } from './clock.js';

const helios = makeHelios();

function useVideoFrame(h) {
  const [frame, setFrame] = useState(frameOf(h.getState()));
  useEffect(() => h.subscribe((state) => setFrame(frameOf(state))), [h]);
  return frame;
}

function Row({ y, n }) {
  return bits(n).map((b, i) => (
    <div key={i} className="bit" style={{ left: X0 + PITCH * i, top: y, width: SIZE, height: SIZE, background: b ? '#fff' : '#000' }} />
  ));
}

function App() {
  const n = useVideoFrame(helios);
  return (
    <>
      {ROWS.map((y) => <Row key={y} y={y} n={n} />)}
      <div className="label">{label('react', n)}</div>
    </>
  );
}

createRoot(document.getElementById('root')).render(<App />);
