// JVM stub of the Android SDK, API level 35 (compileSdk 35), from the published reference
// (developer.android.com/reference). Only the members the app calls; signatures as published.
// Unlike android.jar's stubs this one works: an in-memory ARGB_8888 pixel array, so the tiling code
// runs on the JVM (getPixels/createBitmap copy colours exactly as the platform does for opaque pixels).
package android.graphics;

public final class Bitmap {
    public enum Config { ARGB_8888 }

    private final int width;
    private final int height;
    private final int[] colors;

    private Bitmap(int[] colors, int width, int height) {
        this.colors = colors;
        this.width = width;
        this.height = height;
    }

    public static Bitmap createBitmap(int[] colors, int width, int height, Config config) {
        if (width <= 0 || height <= 0) throw new IllegalArgumentException("width and height must be > 0");
        if (colors.length < width * height) throw new ArrayIndexOutOfBoundsException();
        return new Bitmap(colors.clone(), width, height);
    }

    public int getWidth() { return width; }

    public int getHeight() { return height; }

    public void getPixels(int[] pixels, int offset, int stride, int x, int y, int width, int height) {
        if (x < 0 || y < 0 || x + width > this.width || y + height > this.height) {
            throw new IllegalArgumentException("x + width must be <= bitmap.width()");
        }
        for (int row = 0; row < height; row++) {
            System.arraycopy(colors, (y + row) * this.width + x, pixels, offset + row * stride, width);
        }
    }
}
