// The pixel clock in Three.js: one plane per square under an orthographic camera in pixels;
// helios.subscribe sets each square's colour and renders the scene.
import * as THREE from 'three';
import { makeHelios, frameOf, bits, ROWS, X0, PITCH, SIZE, label } from './clock.js';

const helios = makeHelios();
const canvas = document.getElementById('gl');
const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, preserveDrawingBuffer: true });
renderer.setPixelRatio(1);
renderer.setSize(1280, 720, false);
renderer.setClearColor(0x000000, 1);
// Pixels, y down: (0, 0) is the top-left corner of the viewport.
const camera = new THREE.OrthographicCamera(0, 1280, 0, -720, -1, 1);
const scene = new THREE.Scene();
const plane = new THREE.PlaneGeometry(SIZE, SIZE);
const rows = ROWS.map((y) => bits(0).map((_, i) => {
  const m = new THREE.Mesh(plane, new THREE.MeshBasicMaterial({ color: 0x000000 }));
  m.position.set(X0 + PITCH * i + SIZE / 2, -(y + SIZE / 2), 0);
  scene.add(m);
  return m;
}));
const text = document.getElementById('label');
helios.subscribe((state) => {
  const n = frameOf(state);
  for (const row of rows) bits(n).forEach((b, i) => row[i].material.color.setHex(b ? 0xffffff : 0x000000));
  renderer.render(scene, camera);
  text.textContent = label('three.js', n);
});
