// Transitions in React, as Helios' react-transitions example writes them: <Sequence> mounts
// its children while the frame is in [from, from + duration), and their CSS animations start
// at the sequence's start (animation-delay), seeked by Helios' DomDriver (autoSyncAnimations).
import React, { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Helios } from '@helios-project/core';
import { rate, fps } from './clock.js';
import './transitions.css';

const helios = new Helios({ fps, duration: 5, width: 1280, height: 720, autoSyncAnimations: true });
helios.bindToDocumentTimeline();
window.helios = helios;

function useVideoFrame(h) {
  const [frame, setFrame] = useState(h.getState().currentFrame);
  useEffect(() => h.subscribe((s) => setFrame(s.currentFrame)), [h]);
  return frame;
}

function Sequence({ frame, from, duration, children }) {
  if (frame < from || frame >= from + duration) return null;
  return <div style={{ '--sequence-start': `${from / fps}s`, position: 'absolute', inset: 0 }}>{children}</div>;
}

function App() {
  const frame = useVideoFrame(helios);
  return (
    <div>
      <h1>React transitions · frame {Math.round(frame)} @ {rate.num}/{rate.den}</h1>
      <Sequence frame={frame} from={0} duration={60}>
        <div className="box fade-in" style={{ background: '#61dafb', top: 120, left: 100 }}>React</div>
      </Sequence>
      <Sequence frame={frame} from={20} duration={100}>
        <div className="box grow" style={{ background: '#e63946', top: 320, left: 900 }}>Grow</div>
      </Sequence>
      <Sequence frame={frame} from={45} duration={105}>
        <div className="box slide-right" style={{ background: '#35495e', top: 320, left: 100 }}>Move</div>
      </Sequence>
    </div>
  );
}

createRoot(document.getElementById('root')).render(<App />);
