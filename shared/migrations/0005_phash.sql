-- 64-bit DCT perceptual hash (63 bits used), computed with the thumbnails.
ALTER TABLE images ADD COLUMN phash bigint;
