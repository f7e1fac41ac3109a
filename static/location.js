// Where the browser says the user is, for GeoLists (opt-in: asked only when
// the user ticks the box at login or in Settings).

const GEO_TIMEOUT_MS = 5000;

/** Where the browser says we are, or null (refused, unavailable, too slow). */
export function currentLocation() {
  if (!("geolocation" in navigator)) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), GEO_TIMEOUT_MS);
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        clearTimeout(timer);
        resolve({ lat: pos.coords.latitude, lon: pos.coords.longitude });
      },
      () => {
        clearTimeout(timer);
        resolve(null);
      },
      { enableHighAccuracy: false, maximumAge: 10 * 60 * 1000, timeout: GEO_TIMEOUT_MS },
    );
  });
}
