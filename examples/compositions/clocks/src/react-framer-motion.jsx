// The pixel clock in React with Framer Motion: the frame goes from helios.subscribe into
// React state, an effect puts it into a motion value, and every square's colour is a
// useTransform of that value, applied by Framer Motion's own frame loop.
import React, { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { motion, useMotionValue, useTransform } from 'framer-motion';
import { makeHelios, frameOf, bits, ROWS, X0, PITCH, SIZE, BITS, label } from './clock.js';

const helios = makeHelios();

function useVideoFrame(h) {
  const [frame, setFrame] = useState(frameOf(h.getState()));
  useEffect(() => h.subscribe((state) => setFrame(frameOf(state))), [h]);
  return frame;
}

function Bit({ frame, i, y }) {
  const background = useTransform(frame, (f) => ((Math.round(f) >>> i) & 1 ? '#fff' : '#000'));
  return <motion.div className="bit" style={{ left: X0 + PITCH * i, top: y, width: SIZE, height: SIZE, background }} />;
}

function App() {
  const n = useVideoFrame(helios);
  const frame = useMotionValue(n);
  useEffect(() => { frame.set(n); }, [n, frame]);
  return (
    <>
      {ROWS.map((y) => Array.from({ length: BITS }, (_, i) => <Bit key={`${y}-${i}`} frame={frame} i={i} y={y} />))}
      <div className="label">{label('react + framer-motion', n)}</div>
    </>
  );
}

createRoot(document.getElementById('root')).render(<App />);
