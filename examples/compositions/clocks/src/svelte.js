import { mount } from 'svelte';
import Clock from './Clock.svelte';

mount(Clock, { target: document.getElementById('root') });
